"""A PaddleClas distillation YAML, run as it is: the whole file (Arch, Loss, Optimizer, DataLoader, Global, ...)
translated into a kdjax config by kdjax/config/paddleclas/; what kdjax cannot follow exactly is refused with the
YAML path of the field and why.

  python -m kdjax.main --config=configs/paddleclas.py:PATH.yaml --workdir=DIR [-o KEY=VALUE ...]
  python -m kdjax.main --config=configs/paddleclas.py:PATH.yaml,-o,Global.epochs=2 --workdir=DIR
  python -m kdjax.tools.paddleclas_translate PATH.yaml [-o KEY=VALUE ...]      (print the translation and what is
                                                                                missing on this machine)

PaddleClas' `-o KEY=VALUE` overrides (applied to the YAML before translation) come as repeated `-o` flags or
inside the config argument, separated by `,-o,`; `--config.FIELD=VALUE` overrides the translated kdjax config
afterwards (e.g. `--config.models.Teacher.init=train` to train the teacher here first). Loss terms are logged
under PaddleClas' names (`config.metric_names='paddleclas'`).
"""

import sys

from kdjax.config.paddleclas import parse_config_arg, translate_file


def get_config(arg=None):
    path, overrides = parse_config_arg(arg or "")
    config = translate_file(path, overrides)
    notes = list(config.paddleclas.notes)
    if notes:
        print(f"configs/paddleclas.py: {path} translated; {len(notes)} notes on what kdjax does differently or does "
              f"not use (python -m kdjax.tools.paddleclas_translate {path} prints them)", file=sys.stderr)
    return config
