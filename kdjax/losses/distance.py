"""`distance`: elementwise l1 / l2 / smooth-l1 distance between student and teacher outputs (PaddleClas
DistillationDistanceLoss); `act` applies softmax (over the last NCHW axis, W) or sigmoid first."""

from typing import Optional

import jax
import jax.numpy as jnp

from kdjax.losses.feature_ops import smooth_l1
from kdjax.losses.numerics import f32, softmax
from kdjax.losses.registry import LossSpec, one_of, register_loss, same_shape


def _activate(x, act):
    """DistillationDistanceLoss' `act`: softmax over the last NCHW axis, i.e. W for NHWC maps."""
    if act is None:
        return x
    if act == "sigmoid":
        return jax.nn.sigmoid(x)
    if act == "softmax":
        return softmax(x, axis=2 if x.ndim == 4 else -1)
    raise ValueError(f"act must be None, 'softmax' or 'sigmoid', got {act!r}")


def distance_loss(student, teacher, mode: str = "l2", act: Optional[str] = None, delta: float = 1.0):
    """DistanceLoss: elementwise mean of l1 (|z|), l2 (z², paddle MSELoss: no ½, no root) or smooth_l1."""
    x, y = _activate(f32(student), act), _activate(f32(teacher), act)
    z = x - y
    if mode == "l2":
        return jnp.mean(z * z)
    if mode == "l1":
        return jnp.mean(jnp.abs(z))
    if mode == "smooth_l1":
        return jnp.mean(smooth_l1(z, delta))
    raise ValueError(f"mode must be 'l1', 'l2' or 'smooth_l1', got {mode!r}")



register_loss(LossSpec(
    "distance", "l1 / l2 / smooth_l1 distance (DistillationDistanceLoss)", "feature distance (PaddleClas UDML)",
    "pairs", "unused", dict(mode="l2", act=None),
    lambda e, a, b, ctx: (distance_loss(a[e.s_key], b[e.t_key], e.params["mode"], e.params["act"]),),
    checks=dict(mode=one_of("l1", "l2", "smooth_l1"), act=one_of(None, "softmax", "sigmoid")),
    shape_check=same_shape,
    # separable: elementwise, mean over every element (each sample has as many)
    separable=True))
