"""PaddleClas distillation YAMLs in kdjax: `translate_file(PATH, overrides)` gives the kdjax config of a whole YAML
(Arch, Loss, Optimizer, DataLoader, Global, ...), refusing with the YAML path whatever kdjax cannot follow exactly;
`describe(config)` prints what a config trains and what it needs that is missing; `from_paddleclas` translates a
`Loss.Train` list alone (the golden verifier's route).

Routes: `python -m kdjax.main --config=configs/paddleclas.py:PATH.yaml [-o KEY=VALUE ...]` trains it;
`python -m kdjax.tools.paddleclas_translate PATH.yaml [-o KEY=VALUE ...]` prints the translation.
"""

from kdjax.config.paddleclas.context import YamlError  # noqa: F401
from kdjax.config.paddleclas.keys import default_keys  # noqa: F401
from kdjax.config.paddleclas.losses import from_paddleclas  # noqa: F401
from kdjax.config.paddleclas.report import describe, missing_inputs  # noqa: F401
from kdjax.config.paddleclas.translate import retranslate, translate, translate_file  # noqa: F401
from kdjax.config.paddleclas.yaml_io import apply_overrides, load_yaml, parse_config_arg  # noqa: F401
