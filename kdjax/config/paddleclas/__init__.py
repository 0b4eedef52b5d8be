"""PaddleClas distillation YAMLs in kdjax: `translate_file(PATH, overrides)` gives the kdjax config of a whole YAML
(Arch, Loss, Optimizer, DataLoader, Global, ...), refusing with the YAML path whatever kdjax cannot follow exactly;
`describe(config)` prints what a config trains and what it needs that is missing; `from_paddleclas` translates a
`Loss.Train` list alone (the golden verifier's route).

Routes: `python -m kdjax.main --config=configs/paddleclas.py:PATH.yaml [-o KEY=VALUE ...]` trains it;
`python -m kdjax.tools.paddleclas_translate PATH.yaml [-o KEY=VALUE ...]` prints the translation.
"""

import importlib

# name → submodule; loaded on first use (PEP 562), so no submodule imports its own package back at import time
_EXPORTS = {
    "YamlError": "context", "default_keys": "keys", "from_paddleclas": "losses", "describe": "report",
    "missing_inputs": "report", "retranslate": "document", "translate": "document", "translate_file": "document",
    "apply_overrides": "yaml_io", "load_yaml": "yaml_io", "parse_config_arg": "yaml_io",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
