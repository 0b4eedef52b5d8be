"""`ssld`: DML's symmetric KL against a frozen teacher, on labeled and unlabeled images (PaddleClas SSLD; Cui et al.,
2021). The loss of `dml` with the teacher side detached; the teacher must be frozen."""

from kdjax.losses import dml
from kdjax.losses.registry import LossSpec, register_loss, same_shape

register_loss(LossSpec(
    "ssld", "DML semantics against a frozen teacher (SSLD)", "SSLD: Cui et al., 2021", "pairs", "unused",
    dml.DEFAULTS, lambda e, a, b, ctx: dml.compute(e, a, b, ctx, detach_teacher=True), checks=dml.CHECKS,
    shape_check=same_shape, frozen_teacher=True,
    # separable: dml's mean over samples
    separable=True))
