"""Model zoo: one module per family, each registering its architectures with `@register_model("name")`.

Importing this package imports every module in it, so a new family is one file (docs/extending.md).
"""

import importlib
import pkgutil

from kdjax.models.registry import get_model, list_models, register_model  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
