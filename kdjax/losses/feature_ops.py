"""Operations the feature losses share, on kdjax's NHWC features: PyTorch-style adaptive average pooling, the
reference's NCHW flattening order, and paddle's smooth-L1.

PaddleClas and the torch references work on NCHW maps; where the layout matters these reproduce the NCHW result from
NHWC input. Pooling uses HIGHEST precision einsums.
"""

import math
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST
TargetSize = Union[None, int, Sequence[Optional[int]]]


def smooth_l1(z, delta: float = 1.0):
    """Elementwise paddle SmoothL1Loss: 0.5·z² inside |z| < δ, δ·|z| − 0.5·δ² outside."""
    az = jnp.abs(z)
    return jnp.where(az < delta, 0.5 * z * z, delta * az - 0.5 * delta * delta)


def _pool_matrix(size: int, out: int) -> np.ndarray:
    """[out, size] averaging weights of PyTorch-style adaptive bins [floor(i·H/k), ceil((i+1)·H/k))."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, math.ceil((i + 1) * size / out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _pair(target_size: TargetSize, h: int, w: int):
    if isinstance(target_size, int):
        return target_size, target_size
    th, tw = target_size
    return (h if th is None else int(th)), (w if tw is None else int(tw))


def adaptive_avg_pool(x, target_size: TargetSize):
    """AdaptiveAvgPool2D on NHWC maps (an int or an (h, w) pair; None in the pair keeps that size)."""
    _, h, w, _ = x.shape
    th, tw = _pair(target_size, h, w)
    ph, pw = jnp.asarray(_pool_matrix(h, th)), jnp.asarray(_pool_matrix(w, tw))
    return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw, precision=HIGHEST)


def flatten_nchw(x):
    """Per-sample flattening in the reference's NCHW order (NHWC maps are transposed first)."""
    if x.ndim == 4:
        x = jnp.transpose(x, (0, 3, 1, 2))
    return x.reshape(x.shape[0], -1)
