"""`nst`: neuron selectivity transfer (Huang & Wang, 2017) with the polynomial kernel, as mdistiller's `nst_loss`.

Per feature pair: the map with the larger H is average-pooled to the other's H×H (square: only H decides, as in the
reference); each channel is L2-normalised over its H·W positions (F.normalize, eps 1e-12); with
poly(a, b)[n, i, j] = (Σ_k a[n, j, k] b[n, i, k])², ℓ = mean poly(t, t) + mean poly(s, s) − 2 mean poly(s, t) (the
squared MMD of the two sets of channel distributions; channel counts may differ). The loss sums ℓ over the pairs
(mdistiller: weight 50 on feats[1:]). Each term is a mean over samples of per-sample values: separable. The
teacher–teacher term is detached and, in training, the teacher gets no gradient at all (no_grad in the reference);
`nst_loss` lets the cross term reach the teacher, as the reference function does.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.losses.feature_ops import adaptive_avg_pool
from kdjax.losses.numerics import f32, l2_normalize
from kdjax.losses.registry import LossSpec, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


def pool_to_smaller_height(s, t):
    """mdistiller's NST/VID size matching: the map with the larger H pooled to (H_min, H_min)."""
    hs, ht = s.shape[1], t.shape[1]
    if hs > ht:
        s = adaptive_avg_pool(s, (ht, ht))
    elif hs < ht:
        t = adaptive_avg_pool(t, (hs, hs))
    return s, t


def pooled_hw(s_shape, t_shape):
    """(H·W of the student, of the teacher) after `pool_to_smaller_height`, from NHWC shapes."""
    hs, ws, ht, wt = s_shape[1], s_shape[2], t_shape[1], t_shape[2]
    if hs > ht:
        return ht * ht, ht * wt
    if hs < ht:
        return hs * ws, hs * hs
    return hs * ws, ht * wt


def _poly_mean(a, b):
    """mean over n, i, j of (Σ_k a[n, k, j] b[n, k, i])² for [N, HW, C] maps."""
    return jnp.mean(jnp.square(jnp.einsum("nkj,nki->nij", a, b, precision=HIGHEST)))


def nst_loss(s_feats: Sequence, t_feats: Sequence):
    """Σ over pairs of the polynomial-kernel MMD between the channel distributions (NHWC maps)."""
    total = jnp.zeros((), jnp.float32)
    for s, t in zip(s_feats, t_feats):
        s, t = pool_to_smaller_height(f32(s), f32(t))
        s = l2_normalize(s.reshape(s.shape[0], -1, s.shape[-1]), 1)
        t = l2_normalize(t.reshape(t.shape[0], -1, t.shape[-1]), 1)
        total = total + (jax.lax.stop_gradient(_poly_mean(t, t)) + _poly_mean(s, s) - 2.0 * _poly_mean(s, t))
    return total


def _entry(e):
    if len(e.s_keys) != len(e.t_keys):
        return ("t_keys", f"'nst' pairs student and teacher maps one to one: s_keys has {len(e.s_keys)} names and "
                          f"t_keys {len(e.t_keys)}; give both the same length")
    return None


def pooled_pair_shapes(e, s, t):
    """Shape check shared with VID: NHWC pairs that keep equal H·W after the reference's square pooling."""
    for i, (a, b) in enumerate(zip(s, t)):
        if len(a) != 4 or len(b) != 4:
            return f"needs NHWC feature maps, pair {i} is student {list(a)} and teacher {list(b)}"
        hw_s, hw_t = pooled_hw(a, b)
        if hw_s != hw_t:
            return (f"pair {i}: student {list(a)} and teacher {list(b)} keep different H·W ({hw_s} vs {hw_t}) after "
                    "the reference's square pooling to the smaller H; pick square maps or maps of equal size")
    return None


register_loss(LossSpec(
    "nst", "neuron selectivity transfer: polynomial-kernel MMD of channel distributions (mdistiller nst_loss)",
    "NST: Huang & Wang, arXiv 2017", "pairs", "unused", {},
    lambda e, a, b, ctx: (nst_loss([a[k] for k in e.s_keys], [jax.lax.stop_gradient(b[k]) for k in e.t_keys]),),
    entry_check=_entry, shape_check=pooled_pair_shapes, multi_key=True,
    separable=True))  # per-sample terms, means over samples
