"""`sp`: similarity-preserving KD (Tung & Mori, ICCV 2019), as mdistiller's `sp_loss`.

Per feature pair: each sample's map is flattened (C·H·W; student and teacher may differ in C, H and W), the batch
similarity G = F Fᵀ (N×N) has its rows L2-normalised (F.normalize, eps 1e-12), and ℓ = Σ (G_t − G_s)² / N²; the loss
sums ℓ over the pairs (mdistiller: weight 3000 on the last stage only). The flattening order does not change F Fᵀ, so
NHWC maps are used as they are. It relates the samples of a batch: not separable. The teacher gets no gradient in
training (no_grad in the reference); `sp_loss` itself differentiates both sides, as the reference function does.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.losses.numerics import f32, l2_normalize
from kdjax.losses.registry import LossSpec, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


def _similarity(f):
    f = f32(f).reshape(f.shape[0], -1)
    return l2_normalize(jnp.matmul(f, f.T, precision=HIGHEST), 1)


def sp_loss(s_feats: Sequence, t_feats: Sequence):
    """Σ over pairs of ‖G_t − G_s‖²_F / N²."""
    total = jnp.zeros((), jnp.float32)
    for s, t in zip(s_feats, t_feats):
        n = s.shape[0]
        total = total + jnp.sum(jnp.square(_similarity(t) - _similarity(s))) / (n * n)
    return total


def _entry(e):
    if len(e.s_keys) != len(e.t_keys):
        return ("t_keys", f"'sp' pairs student and teacher features one to one: s_keys has {len(e.s_keys)} names and "
                          f"t_keys {len(e.t_keys)}; give both the same length")
    return None


register_loss(LossSpec(
    "sp", "similarity-preserving KD: batch similarity matrices of student vs teacher features (mdistiller sp_loss)",
    "SP: Tung & Mori, ICCV 2019", "pairs", "unused", {},
    lambda e, a, b, ctx: (sp_loss([a[k] for k in e.s_keys], [jax.lax.stop_gradient(b[k]) for k in e.t_keys]),),
    entry_check=_entry, multi_key=True, separable=False))
