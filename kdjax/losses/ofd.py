"""`ofd`: overhaul of feature distillation (Heo et al., ICCV 2019), as mdistiller's OFD distiller (its `ofd_loss`,
`feat_loss`, `ConnectorConvBN` and `init_ofd_modules`).

Pre-ReLU features on both sides (`*_preact` captures). Per pair i of k: x = BN(conv(f_s)), the connector (a k×k conv
C_s→C_t without bias, init N(0, 2/(k·k·C_t)), then a BatchNorm in training mode: batch statistics, weight 1 / bias 0
at init), and t = the teacher map average-pooled to x's H×W (no gradient). With the teacher's per-channel margin m,
the partial L2

    d = (x − m)²·1(x > m ∧ t ≤ m) + (x − t)²·1(x > t ∧ m < t ≤ 0) + (x − t)²·1(t > 0)

is averaged over the batch and summed over C, H, W; the loss is Σ_i d_i / 2^(k−1−i) (the last pair weighs 1, the
one before ½, ...; mdistiller's weight is 0.001). The connectors live with the other loss parameters (trained with the
student, never exported); their BatchNorm makes the loss non-separable.

The margins come from the teacher's BatchNorm before each pre-ReLU feature, read once from the frozen teacher's
variables when training starts (loss state, not trained): with s = |γ_c| and μ = β_c, margin_c =
−s·φ(μ/s)/Φ(−μ/s) + μ (the expectation of the BN output's negative part under N(μ, s²)) when Φ(−μ/s) > 0.001, else
−3s, computed in float64 and stored as float32 as the reference does. `teacher_bns` names those BatchNorms, one
'/'-separated param path per t_key: convnet_teacher 'stage{i}_conv0/BatchNorm_0' (blocks_preact[i]); CIFAR ResNets
'layer{i+1}_{n−1}/bn2' (stages_preact[i], e.g. layer1_4/bn2 for resnet32x4; the feature is bn2 + shortcut, the
margin uses bn2 alone, as mdistiller's get_bn_before_relu does); WRNs 'block2/layer_0/bn1', 'block3/layer_0/bn1',
'bn1'. The reference also runs its teacher in training mode (OFD.train() switches every child, teacher included, to
batch statistics; so does the authors' code): set the teacher's `train_mode=True` (configs/ofd.py does).
s_keys, t_keys and teacher_bns must have one length (the reference would take the last k features but the first k
margins when its lists differ; kdjax refuses that).
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kdjax.losses.feature_ops import adaptive_avg_pool
from kdjax.losses.heads import BatchStatNorm
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import REQUIRED, LossSpec, register_loss

HIGHEST = jax.lax.Precision.HIGHEST


class OFDConnector(nn.Module):
    """ConnectorConvBN's connector: conv k×k (padding (k−1)//2, no bias) → BatchNorm (batch statistics)."""

    teacher_channels: int
    kernel_size: int = 1

    @nn.compact
    def __call__(self, x):
        k, pad = self.kernel_size, (self.kernel_size - 1) // 2
        x = nn.Conv(self.teacher_channels, (k, k), padding=((pad, pad), (pad, pad)), use_bias=False,
                    kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"), precision=HIGHEST,
                    param_dtype=F32, dtype=F32, name="conv")(f32(x))
        return BatchStatNorm(name="bn")(x)


def ofd_margin(weight, bias) -> np.ndarray:
    """float32 [C] margins from a BatchNorm's γ (weight) and β (bias), as init_ofd_modules computes them."""
    out = []
    for g, b in zip(np.asarray(weight, np.float32).tolist(), np.asarray(bias, np.float32).tolist()):
        s, m = abs(g), b
        cdf = 0.5 * math.erfc((m / s) / math.sqrt(2.0))  # Φ(−m/s)
        if cdf > 0.001:
            out.append(-s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + m)
        else:
            out.append(-3 * s)
    return np.asarray(out, np.float32)


def feat_loss(x, t, margin):
    """Σ_{C,H,W} mean_N of the partial L2 between connector output x and (pooled) teacher t, NHWC."""
    loss = (jnp.square(x - margin) * ((x > margin) & (t <= margin))
            + jnp.square(x - t) * ((x > t) & (t > margin) & (t <= 0))
            + jnp.square(x - t) * (t > 0))
    return jnp.sum(jnp.mean(jnp.abs(loss), axis=0))


def ofd_init(rng, s_feats: Sequence, t_feats: Sequence, kernel_size: int = 1) -> dict:
    """{"connector{i}": ...} sized from the NHWC maps (arrays or shape structs)."""
    return {f"connector{i}": OFDConnector(int(t.shape[-1]), kernel_size).init(
        jax.random.fold_in(rng, i), jnp.zeros((2, 1, 1, int(s.shape[-1])), F32))["params"]
        for i, (s, t) in enumerate(zip(s_feats, t_feats))}


def ofd_loss(params, s_feats: Sequence, t_feats: Sequence, margins: Sequence, kernel_size: int = 1):
    """Σ_i feat_loss(connector_i(f_s,i), pool(f_t,i), margin_i) / 2^(k−1−i) over k NHWC pairs."""
    k = len(s_feats)
    total = jnp.zeros((), jnp.float32)
    for i, (s, t) in enumerate(zip(s_feats, t_feats)):
        x = OFDConnector(int(t.shape[-1]), kernel_size).apply({"params": params[f"connector{i}"]}, s)
        t = adaptive_avg_pool(jax.lax.stop_gradient(f32(t)), (x.shape[1], x.shape[2]))
        total = total + feat_loss(x, t, f32(margins[i])) / 2 ** (k - 1 - i)
    return total


# ---- the teacher's BatchNorms ---------------------------------------------------------------------------------------

def _bn(variables, path: str):
    node = variables.get("params", {}) if hasattr(variables, "get") else {}
    for part in path.split("/"):
        if not hasattr(node, "get") or part not in node:
            return None
        node = node[part]
    return node if hasattr(node, "get") and "scale" in node and "bias" in node else None


def _teacher_check(e, variables, t_outputs=None):
    for i, path in enumerate(e.params["teacher_bns"]):
        bn = _bn(variables, path)
        if bn is None:
            return ("params.teacher_bns", f"the teacher has no BatchNorm at {path!r} (a '/'-separated param path "
                                          f"holding 'scale' and 'bias'; see kdjax/losses/ofd.py for the zoo's paths)")
        if t_outputs is not None and e.t_keys[i] in t_outputs:
            c = int(t_outputs[e.t_keys[i]].shape[-1])
            if tuple(bn["scale"].shape) != (c,):
                return ("params.teacher_bns", f"{path!r} has {bn['scale'].shape[0]} channels but t_keys[{i}] "
                                              f"{e.t_keys[i]!r} has {c}: name the BatchNorm before that feature's ReLU")
    return None


def _teacher_state(e, variables):
    margins = {}
    for i, path in enumerate(e.params["teacher_bns"]):
        bn = jax.device_get(_bn(variables, path))
        if np.any(np.asarray(bn["scale"]) == 0):
            raise ValueError(f"losses[{e.index}] (ofd): the teacher BatchNorm {path!r} has γ = 0 in a channel; the "
                             "margin divides by |γ| (the reference fails there too)")
        margins[f"margin{i}"] = jnp.asarray(ofd_margin(bn["scale"], bn["bias"]))
    return margins


def _paths(v):
    ok = isinstance(v, (list, tuple)) and v and all(isinstance(p, str) and p for p in v)
    return None if ok else f"must be a non-empty list of teacher param paths such as 'layer1_4/bn2', got {v!r}"


def _kernel(v):
    ok = isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 2 == 1
    return None if ok else f"must be a positive odd integer (the connector keeps the student's H×W), got {v!r}"


def _entry(e):
    n = {len(e.s_keys), len(e.t_keys), len(e.params["teacher_bns"])}
    if len(n) != 1:
        return ("t_keys", f"'ofd' needs one teacher BatchNorm per pair: s_keys has {len(e.s_keys)} names, t_keys "
                          f"{len(e.t_keys)} and params.teacher_bns {len(e.params['teacher_bns'])}; give all three "
                          "the same length")
    return None


def _shapes(e, s, t):
    if any(len(x) != 4 for x in list(s) + list(t)):
        return f"needs NHWC pre-ReLU feature maps, got {[list(x) for x in list(s) + list(t)]}"
    return None


def _compute(e, a, b, ctx):
    margins = [ctx.state[f"margin{i}"] for i in range(len(e.t_keys))]
    return (ofd_loss(ctx.params, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys], margins,
                     e.params["kernel_size"]),)


register_loss(LossSpec(
    "ofd", "overhaul of feature distillation: partial L2 of connector(student pre-ReLU) vs teacher pre-ReLU with "
           "BN-derived margins (mdistiller OFD)", "OFD: Heo et al., ICCV 2019", "pairs", "unused",
    dict(teacher_bns=REQUIRED, kernel_size=1), _compute, checks=dict(teacher_bns=_paths, kernel_size=_kernel),
    entry_check=_entry, shape_check=_shapes, multi_key=True, learnable=True, frozen_teacher=True,
    init=lambda e, a, b, rng: ofd_init(rng, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys],
                                       e.params["kernel_size"]),
    teacher_state=_teacher_state, teacher_check=_teacher_check,
    separable=False))  # the connectors' BatchNorms normalise with the whole batch's statistics
