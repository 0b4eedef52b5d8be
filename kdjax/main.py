"""Entry point: `python -m kdjax.main --config=configs/dkd.py --workdir=DIR [--mode=train|eval]`.

Flags only; the library does the work (train.run, eval_mode.run). User errors print one message, no traceback.
"""

import difflib
import os
import re
import signal
import sys

_STARTUP_SIGTERM = []
if __name__ == "__main__":  # before the slow imports: a SIGTERM during start-up still ends cleanly, with exit code 0
    signal.signal(signal.SIGTERM, lambda *_: _STARTUP_SIGTERM.append(True))

import kdjax.xla_flags  # noqa: E402,F401  (XLA flags and malloc settings: before jax is imported)
from kdjax import cli_flags  # noqa: E402
from absl import app, flags  # noqa: E402

_CONFIG = cli_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/dkd.py or configs/dkd.py:cifar100.",
                                          lock_config=True)
_WORKDIR = cli_flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the export.")
_MODE = cli_flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (resumes automatically) or eval.")
_EXPORT_DIR = cli_flags.DEFINE_string("export_dir", None, "--mode=eval: evaluate this export instead of the checkpoint.")
_RESTART = cli_flags.DEFINE_bool("restart", False, "Move an existing run in --workdir aside and start fresh.")
# multi-host (see kdjax/distributed.py): Cloud TPU and Slurm are detected; elsewhere give all three, or the
# JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment variables
_COORDINATOR = cli_flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0's coordinator.")
_NUM_PROCESSES = cli_flags.DEFINE_integer("num_processes", None, "Multi-host: the number of processes.")
_PROCESS_ID = cli_flags.DEFINE_integer("process_id", None, "Multi-host: this process's index, 0..num_processes-1.")
_LOCAL_DEVICES = cli_flags.DEFINE_string("local_device_ids", None, "Multi-host: comma-separated local device ids this "
                                                               "process uses (default: all; e.g. $SLURM_LOCALID).")
_DISTRIBUTED = cli_flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                 "auto: initialise JAX's distributed runtime when the flags/env above, a Cloud TPU "
                                 "VM or a multi-task Slurm step say so; on: always (JAX auto-detects); off: never.")


def _fail(message: str):
    print(f"kdjax: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.errors import KdjaxError
    from kdjax.phase import listen_for_sigterm

    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax/grain log every save at INFO
    listen_for_sigterm(pending=bool(_STARTUP_SIGTERM))  # SIGTERM before the loop: checkpoint after 1 step, exit 0

    try:
        _run()
    except KdjaxError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        print("kdjax: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr,
              flush=True)
        sys.exit(130)


def _run():
    from kdjax.errors import ConfigError
    from kdjax import distributed

    if distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _LOCAL_DEVICES.value,
                              mode=_DISTRIBUTED.value):
        from kdjax.phase import listen_for_sigterm

        listen_for_sigterm()  # JAX's preemption notifier took SIGTERM over; kdjax handles it (phase.py)
    try:
        config = _CONFIG.value
        if config is not None:
            config.get("models")  # a config file that failed to load raises here
    except Exception as e:  # noqa: BLE001 - ml_collections defers a failed config-file load to this access
        raise ConfigError("", f"--config: {_last_line(str(e))}") from None
    if config is None:
        raise ConfigError("", "no --config given; e.g. --config=configs/dkd.py")
    if not _WORKDIR.value:
        raise ConfigError("", "no --workdir given; e.g. --workdir=/tmp/kdjax_dkd")
    workdir = os.path.abspath(_WORKDIR.value)
    if _MODE.value == "eval":
        from kdjax import eval_mode

        eval_mode.run(config, workdir, export_dir=_EXPORT_DIR.value)
        return
    from kdjax import train

    train.run(config, workdir, restart=_RESTART.value)  # --restart moves the old run aside once the checks pass


# ---- flag errors: one line naming the flag or config field, no traceback ------------------------------------------

def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("Pass --help")]
    return lines[-1] if lines else text.strip()


def _load_config_file(argv):
    """The config `--config=path[:arg]` names, loaded outside absl (only to explain a bad override)."""
    import importlib.util

    value = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if not value:
        return None
    path, _, arg = value.partition(":")
    spec = importlib.util.spec_from_file_location("_kdjax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _missing_field(argv) -> str:
    """`config.a.b: no such field ...` for the first `--config.a.b=v` whose path the config does not define."""
    try:
        config = _load_config_file(argv)
    except Exception:  # noqa: BLE001
        config = None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config."):].split("=", 1)[0]
        node, walked = config, "config"
        for part in path.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else None
            if keys is None or part not in keys:
                close = difflib.get_close_matches(part, keys or [], n=1)
                hint = f" (did you mean {walked}.{close[0]}?)" if close else ""
                fields = f"; {walked} has: {', '.join(sorted(keys))}" if keys else ""
                return (f"config.{path}: no such config field{hint}{fields}. `--config.FIELD=VALUE` can only set "
                        f"fields the config file defines.")
            node, walked = node[part], f"{walked}.{part}"
    return ""


def _flag_error(text: str, argv) -> str:
    m = re.match(r"flag --config\.([^=\s]+)=(.*?): (.*)", text, re.S)
    if m and "Traceback" not in text:
        field, value, why = m.groups()
        current = ""
        try:
            node = flags.FLAGS["config"].value
            for part in field.split("."):
                node = node[part]
            current = f" (it is a {type(node).__name__}, now {node!r})"
        except Exception:  # noqa: BLE001
            pass
        return f"config.{field}: cannot set it to {value!r}{current}: {_last_line(why)}"
    head = text.strip().splitlines()[0] if text.strip() else text
    if "Traceback" in text:  # the config file raised: its own message is the last line
        flag = re.match(r"flag (--\S+?)(=|:)", head)
        return f"{flag.group(1) if flag else '--config'}: {_last_line(text)}"
    return _last_line(text) + " (see --helpshort)"


def _parse_flags(argv):
    """absl's flag parsing, every problem reported as one line naming the flag or config field, exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(_flag_error(str(e), argv))
    except (AttributeError, KeyError) as e:  # ml_collections: --config.a.b=v where the config has no a.b
        _fail(_missing_field(argv) or f"a --config.FIELD override names a field the config does not have ({e})")
    except Exception as e:  # noqa: BLE001 - the config file itself failed to import or run
        _fail(f"--config: the config file failed to load: {type(e).__name__}: {_last_line(str(e))}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=_parse_flags)
