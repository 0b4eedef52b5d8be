"""The distillation losses: one module per loss type (its maths, hyper-parameter and shape checks, and its
`register_loss(LossSpec(...))`), the entries of `config.losses` checked against the models, and their weighted sum.

    loss_types()                         name -> LossSpec of every registered type
    validate_losses(loss_configs, model_names, captured_keys, frozen)   ConfigError before any compute
    build_losses(loss_configs) -> CombinedLoss: init(rng, outputs), __call__(...) -> (total, terms), apply(...)

Importing this package imports every module in it, so a new loss file registers itself (docs/extending.md).
Definitions follow PaddleClas / mdistiller exactly, quirks included (../shared/golden/LOSSES.md). Two behaviours
differ from what the reference's code seems to say; both follow what it does: the teacher side of soft_ce / kd / dkd
gets no gradient (paddle's soft-label CE and kl_div ops do not differentiate their label input), and every weight is
applied (see combine.py).
"""

import importlib
import pkgutil

from kdjax.losses.combine import CombinedLoss, build_losses  # noqa: F401
from kdjax.losses.entries import validate_losses  # noqa: F401
from kdjax.losses.registry import LossSpec, loss_types, register_loss  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
