"""Entry point: `python -m kdjax.main --config=configs/dkd.py --workdir=DIR [--mode=train|eval]`.

Flags only; the library does the work (train.run, eval_mode.run). User errors print one message, no traceback.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/dkd.py or configs/dkd.py:cifar100.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the export.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (resumes automatically) or eval.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "--mode=eval: evaluate this export instead of the checkpoint.")
_RESTART = flags.DEFINE_bool("restart", False, "Move an existing run in --workdir aside and start fresh.")


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.errors import KdjaxError

    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax/grain log every save at INFO

    try:
        _run()
    except KdjaxError as e:
        print(f"kdjax: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def _run():
    from kdjax.errors import ConfigError
    from kdjax import distributed

    distributed.initialize()
    config = _CONFIG.value
    if config is None:
        raise ConfigError("", "no --config given; e.g. --config=configs/dkd.py")
    if not _WORKDIR.value:
        raise ConfigError("", "no --workdir given; e.g. --workdir=/tmp/kdjax_dkd")
    workdir = os.path.abspath(_WORKDIR.value)
    if _MODE.value == "eval":
        from kdjax import eval_mode

        eval_mode.run(config, workdir, export_dir=_EXPORT_DIR.value)
        return
    if _RESTART.value:
        from kdjax.workdir import move_aside

        move_aside(workdir)
    from kdjax import train

    train.run(config, workdir)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
