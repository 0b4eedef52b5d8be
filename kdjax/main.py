"""Train, evaluate or check a distillation config.

  python -m kdjax.main --config=configs/dkd.py --workdir=runs/dkd               train (resumes automatically)
  python -m kdjax.main --config=configs/dkd.py --workdir=runs/dkd --mode=eval   evaluate the newest checkpoint
  python -m kdjax.main --config=configs/dkd.py --workdir=runs/dkd --mode=check  models, features, losses, mesh,
      FLOPs per image and memory per device of the compiled train step; trains nothing, writes nothing
  python -m kdjax.main --config=configs/paddleclas.py:PATH.yaml --mode=check    without --workdir: what the config
      (here a PaddleClas YAML's translation) trains and what it needs that is missing on this machine

Flags only; the library does the work (kdjax.train.run, kdjax.evaluate.run).
"""

import signal

_STARTUP_SIGTERM = []


def _stop_during_startup(*_):
    """Nothing is written before main() runs: a SIGTERM while importing ends the process at once, exit code 0."""
    import os
    import sys

    print("kdjax: SIGTERM during start-up: stopped (nothing was written)", file=sys.stderr, flush=True)
    os._exit(0)


if __name__ == "__main__":  # before the slow imports
    signal.signal(signal.SIGTERM, _stop_during_startup)

import kdjax.runtime.xla_flags  # noqa: E402,F401  (XLA flags and malloc settings: before jax is imported)
from kdjax.cli import flags as cli_flags  # noqa: E402

_CONFIG = cli_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/dkd.py or configs/dkd.py:cifar100.",
                                       lock_config=True)
_WORKDIR = cli_flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the export.")
_MODE = cli_flags.DEFINE_enum("mode", "train", ["train", "eval", "check"],
                              "train (resumes automatically), eval, or check (what the config trains, what it "
                              "lacks here and, with --workdir, what a run would cost; no training).")
_EXPORT_DIR = cli_flags.DEFINE_string("export_dir", None, "--mode=eval: evaluate this export instead of the checkpoint.")
_RESTART = cli_flags.DEFINE_bool("restart", False, "Move an existing run in --workdir aside and start fresh.")
_PADDLECLAS_O = cli_flags.DEFINE_multi_string("paddleclas_override", [], "-o KEY=VALUE (repeatable): a PaddleClas "
                                              "override of the YAML of --config=configs/paddleclas.py:PATH.yaml, "
                                              "applied before translation (e.g. -o Global.epochs=2).", short_name="o")
# multi-host (see kdjax/runtime/distributed.py): Cloud TPU and Slurm are detected; elsewhere give all three, or the
# JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables
_COORDINATOR = cli_flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0's coordinator.")
_NUM_PROCESSES = cli_flags.DEFINE_integer("num_processes", None, "Multi-host: the number of processes.")
_PROCESS_ID = cli_flags.DEFINE_integer("process_id", None, "Multi-host: this process's index, 0..num_processes-1.")
_LOCAL_DEVICES = cli_flags.DEFINE_string("local_device_ids", None, "Multi-host: comma-separated local device ids this "
                                         "process uses (default: all; e.g. $SLURM_LOCALID).")
_DISTRIBUTED = cli_flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                     "auto: initialise JAX's distributed runtime when the flags/env above, a Cloud "
                                     "TPU VM or a multi-task Slurm step say so; on: always (JAX auto-detects); off: "
                                     "never.")
FLAG_NAMES = ("config", "workdir", "mode", "export_dir", "restart", "paddleclas_override", "coordinator_address",
              "num_processes", "process_id", "local_device_ids", "distributed")


def main(argv):
    del argv
    import os

    from absl import logging as absl_logging

    from kdjax.cli.flags import load_config
    from kdjax.errors import ConfigError
    from kdjax.runtime import distributed, preemption

    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax/grain log every save at INFO
    # SIGTERM outside a training loop ends the process at once, exit 0 (it waits only for a write in progress);
    # inside one, the loop checkpoints and stops (kdjax/runtime/preemption.py)
    preemption.listen_for_sigterm(pending=bool(_STARTUP_SIGTERM))
    if distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _LOCAL_DEVICES.value,
                              mode=_DISTRIBUTED.value):
        # JAX's preemption notifier took SIGTERM over; kdjax handles it, every process stopping at the same step
        preemption.listen_for_sigterm(multi=True)
    config = load_config(_CONFIG)
    if _PADDLECLAS_O.value:  # PaddleClas -o overrides: translate the YAML again with them, then the --config.* ones
        from kdjax.cli.flags import config_overrides
        from kdjax.config.paddleclas import retranslate

        config = retranslate(config, _PADDLECLAS_O.value, config_overrides())
    if _MODE.value == "check" and not _WORKDIR.value:  # the config as read, and what is missing here
        _check(config)
        return
    if not _WORKDIR.value:
        raise ConfigError("", "no --workdir given; e.g. --workdir=/tmp/kdjax_dkd")
    workdir = os.path.abspath(_WORKDIR.value)
    if _MODE.value == "check":
        from kdjax.tools import preflight

        preflight.report(config, workdir)
        return
    if _MODE.value == "eval":
        from kdjax import evaluate

        evaluate.run(config, workdir, export_dir=_EXPORT_DIR.value)
        return
    from kdjax import train

    train.run(config, workdir, restart=_RESTART.value)  # --restart moves the old run aside once the checks pass


def _check(config):
    """--mode=check: the config as a person reads it (models, losses under their logged names, optimizer, data; for a
    PaddleClas YAML where each part came from and the translation's notes) and what it names that is not here."""
    from kdjax.config.paddleclas import describe

    print(describe(config), flush=True)


def cli():
    """`python -m kdjax.main`, and the `kdjax-train` console script."""
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax", module="kdjax.main", doc=__doc__, flag_names=FLAG_NAMES,
                interrupted="run the same command again to resume from the last checkpoint")


if __name__ == "__main__":
    cli()
