"""`vid`: variational information distillation (Ahn et al., CVPR 2019), as mdistiller's `vid_loss` / VID distiller.

Per feature pair (the map with the larger H pooled to the smaller H×H first, as in NST): μ = r(f_s), a regressor of
three bias-free 1×1 convs C_s→C_t→C_t→C_t with ReLUs between; σ²_c = softplus(log_scale_c) + eps per teacher channel;
ℓ = mean over N·C_t·H·W of ½((μ − f_t)²/σ² + log σ²), the Gaussian negative log-likelihood up to a constant. The
loss sums ℓ over the pairs (mdistiller: feats[1:], weight 1), one regressor and one log_scale per pair, living with
the other loss parameters (trained with the student, never exported). Init: torch's default conv init; log_scale =
log(exp(init_pred_var − eps) − 1), so σ² starts at init_pred_var.

learn_variance: True trains log_scale (the paper, the author's code, RepDistiller). mdistiller keeps its log_scales
in a plain Python list, so they are not registered parameters and its optimizer never updates them: σ² stays at
init_pred_var. learn_variance=False reproduces that (log_scale is then a constant, not a parameter). The teacher gets
no gradient in training; `vid_loss` itself differentiates every input, as the reference function does. Separable:
every step is per sample.
"""

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kdjax.losses.heads import TORCH_DEFAULT_KERNEL
from kdjax.losses.nst import pool_to_smaller_height, pooled_pair_shapes
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import LossSpec, boolean, positive, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


def initial_log_scale(init_pred_var: float, eps: float) -> float:
    """log(exp(init_pred_var − eps) − 1): softplus of it plus eps is init_pred_var (the reference, in float64)."""
    return float(np.log(np.exp(init_pred_var - eps) - 1.0))


class VIDRegressor(nn.Module):
    """conv0 (C_s→C_t) → ReLU → conv2 → ReLU → conv4, 1×1, no bias (names follow the torch Sequential indices)."""

    teacher_channels: int

    @nn.compact
    def __call__(self, x):
        conv = dict(kernel_size=(1, 1), use_bias=False, kernel_init=TORCH_DEFAULT_KERNEL, precision=HIGHEST,
                    param_dtype=F32, dtype=F32)
        x = nn.relu(nn.Conv(self.teacher_channels, name="conv0", **conv)(f32(x)))
        x = nn.relu(nn.Conv(self.teacher_channels, name="conv2", **conv)(x))
        return nn.Conv(self.teacher_channels, name="conv4", **conv)(x)


def vid_pair_loss(regressor_params, log_scale, s_feat, t_feat, eps: float = 1e-5):
    """mean of ½((r(f_s) − f_t)²/σ² + log σ²) for one NHWC pair; σ² = softplus(log_scale) + eps per channel."""
    s, t = pool_to_smaller_height(f32(s_feat), f32(t_feat))
    mean = VIDRegressor(int(t.shape[-1])).apply({"params": regressor_params}, s)
    var = jax.nn.softplus(f32(log_scale)) + eps
    return jnp.mean(0.5 * (jnp.square(mean - t) / var + jnp.log(var)))


def vid_init(rng, s_feats: Sequence, t_feats: Sequence, init_pred_var: float = 5.0, eps: float = 1e-5,
             learn_variance: bool = True) -> dict:
    """{"pair{i}": {"regressor": ..., ["log_scale": [C_t]]}} sized from the NHWC maps (arrays or shape structs)."""
    params = {}
    for i, (s, t) in enumerate(zip(s_feats, t_feats)):
        c_t = int(t.shape[-1])
        x = jnp.zeros((1, 1, 1, int(s.shape[-1])), F32)
        p = {"regressor": VIDRegressor(c_t).init(jax.random.fold_in(rng, i), x)["params"]}
        if learn_variance:
            p["log_scale"] = jnp.full((c_t,), initial_log_scale(init_pred_var, eps), F32)
        params[f"pair{i}"] = p
    return params


def vid_loss(params, s_feats: Sequence, t_feats: Sequence, init_pred_var: float = 5.0, eps: float = 1e-5,
             log_scales: Optional[Sequence] = None):
    """Σ over pairs of vid_pair_loss. log_scale comes from params, else from `log_scales`, else the constant init."""
    total = jnp.zeros((), jnp.float32)
    for i, (s, t) in enumerate(zip(s_feats, t_feats)):
        p = params[f"pair{i}"]
        if "log_scale" in p:
            log_scale = p["log_scale"]
        elif log_scales is not None:
            log_scale = log_scales[i]
        else:
            log_scale = jnp.full((t.shape[-1],), initial_log_scale(init_pred_var, eps), F32)
        total = total + vid_pair_loss(p["regressor"], log_scale, s, t, eps)
    return total


def _entry(e):
    if len(e.s_keys) != len(e.t_keys):
        return ("t_keys", f"'vid' pairs student and teacher maps one to one: s_keys has {len(e.s_keys)} names and "
                          f"t_keys {len(e.t_keys)}; give both the same length")
    if e.params["init_pred_var"] <= e.params["eps"]:
        return ("params.init_pred_var", f"must exceed eps={e.params['eps']} (σ² = softplus(log_scale) + eps starts "
                                        f"at init_pred_var), got {e.params['init_pred_var']}")
    return None


def _compute(e, a, b, ctx):
    p = e.params
    return (vid_loss(ctx.params, [a[k] for k in e.s_keys], [jax.lax.stop_gradient(b[k]) for k in e.t_keys],
                     p["init_pred_var"], p["eps"]),)


register_loss(LossSpec(
    "vid", "variational information distillation: Gaussian NLL of teacher maps under a regressed mean and learned "
           "per-channel variance (mdistiller VID)", "VID: Ahn et al., CVPR 2019", "pairs", "unused",
    dict(init_pred_var=5.0, eps=1e-5, learn_variance=True), _compute,
    checks=dict(init_pred_var=positive, eps=positive, learn_variance=boolean), entry_check=_entry,
    shape_check=pooled_pair_shapes, multi_key=True, learnable=True, separable=True,  # per-sample terms, means over N·C·H·W
    init=lambda e, a, b, rng: vid_init(rng, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys],
                                       e.params["init_pred_var"], e.params["eps"], e.params["learn_variance"])))
