"""`at`: attention transfer (Zagoruyko & Komodakis, ICLR 2017) over pairs of NHWC feature maps.

AT: Q = vec(Σ_c |A_c|^p) / ‖·‖₂ per sample and layer (the reference code averages over channels, the same map
after normalisation); L = β/2 · Σ_j mean_{n,i}((Q_s,j − Q_t,j)²) over layer pairs j, as in the authors' code
(β = 1000; RepDistiller / mdistiller apply β without the ½). A larger map is average-pooled to the smaller
one's size first (RepDistiller). Teacher features get no gradient in both losses (the references run the
teacher under no_grad / detach it).
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.losses.feature_ops import adaptive_avg_pool
from kdjax.losses.numerics import f32, l2_normalize
from kdjax.losses.registry import LossSpec, number, positive, register_loss


def attention_map(feat, p: float = 2.0):
    """[N, H·W]: Σ_c |A_c|^p (as a channel mean), flattened and L2-normalised per sample."""
    f = f32(feat)
    a = jnp.square(f) if float(p) == 2.0 else jnp.power(jnp.abs(f), float(p))
    a = jnp.mean(a, axis=-1).reshape(f.shape[0], -1)
    return l2_normalize(a, 1)


def _match_sizes(s, t):
    """Average-pool the larger map to the smaller one's H×W (RepDistiller's at_loss)."""
    (hs, ws), (ht, wt) = s.shape[1:3], t.shape[1:3]
    if (hs, ws) == (ht, wt):
        return s, t
    if hs * ws > ht * wt:
        return adaptive_avg_pool(s, (ht, wt)), t
    return s, adaptive_avg_pool(t, (hs, ws))


def at_losses(s_feats: Sequence, t_feats: Sequence, p: float = 2.0):
    """[mean_{n,i}((Q_s,j − Q_t,j)²) for each layer pair j] (no β)."""
    if len(s_feats) != len(t_feats):
        raise ValueError(f"AT pairs student and teacher maps one to one, got {len(s_feats)} and {len(t_feats)}")
    out = []
    for s, t in zip(s_feats, t_feats):
        s, t = _match_sizes(f32(s), jax.lax.stop_gradient(f32(t)))
        out.append(jnp.mean(jnp.square(attention_map(s, p) - attention_map(t, p))))
    return out


def at_loss(s_feats: Sequence, t_feats: Sequence, p: float = 2.0, beta: float = 1000.0):
    """β/2 · Σ_j mean((Q_s,j − Q_t,j)²) over the layer pairs."""
    return beta / 2.0 * sum(at_losses(s_feats, t_feats, p))



def _entry(e):
    if len(e.s_keys) != len(e.t_keys):
        return ("t_keys", f"'at' pairs student and teacher maps one to one: s_keys has {len(e.s_keys)} names and "
                          f"t_keys {len(e.t_keys)}; give both the same length")
    return None


def _shapes(e, s, t):
    if any(len(x) != 4 for x in list(s) + list(t)):
        return f"needs NHWC feature maps, got {[list(x) for x in list(s) + list(t)]}"
    return None


register_loss(LossSpec(
    "at", "attention transfer over layer pairs, beta/2 · Σ MSE of normalised maps",
    "AT: Zagoruyko & Komodakis, ICLR 2017", "pairs", "unused", dict(p=2.0, beta=1000.0),
    lambda e, a, b, ctx: (at_loss([a[k] for k in e.s_keys], [b[k] for k in e.t_keys], e.params["p"],
                                  e.params["beta"]),),
    checks=dict(p=positive, beta=number), entry_check=_entry, shape_check=_shapes, multi_key=True,
    # separable: per-sample attention maps, mean over samples
    separable=True))
