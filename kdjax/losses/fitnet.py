"""`fitnet`: FitNet hints (Romero et al., ICLR 2015), NHWC.

FitNet: L_HT = mean((r(v_s) − u_t)²), a student ("guided") feature map v_s through a learned regressor r
against a teacher ("hint") map u_t. The regressor is the paper's convolutional one: a valid convolution with
kernel (H_s − H_t + 1, W_s − W_t + 1), i.e. a 1×1 conv when the maps have the same size, followed by the
hint's non-linearity (ReLU: the paper requires u_t and r to share it; pass relu=False for pre-activation
hints). `regressor="conv3x3"` is RepDistiller / mdistiller's ConvReg instead (3×3 conv, BatchNorm, ReLU; equal
sizes). The value is the mean over N·H_t·W_t·C_t elements (RepDistiller's HintLoss = nn.MSELoss); the paper's
½‖·‖² summed is N·H·W·C/2 times it, which the loss weight absorbs. The regressor lives in the training state
with the other loss parameters and is never exported. The teacher map gets no gradient (the reference detaches it).
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.heads import TORCH_DEFAULT_KERNEL, BatchStatNorm, torch_uniform_bias
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import LossSpec, boolean, one_of, register_loss

HIGHEST = jax.lax.Precision.HIGHEST
REGRESSORS = ("conv", "conv3x3")


def regressor_kernel(s_shape, t_shape) -> Tuple[int, int]:
    """The paper's regressor kernel (H_s − H_t + 1, W_s − W_t + 1) for NHWC shapes."""
    return int(s_shape[1]) - int(t_shape[1]) + 1, int(s_shape[2]) - int(t_shape[2]) + 1


class FitNetRegressor(nn.Module):
    """r(v): conv (valid, paper kernel) [+ ReLU], or conv3x3 + BatchNorm (batch statistics) [+ ReLU]."""

    teacher_channels: int
    kernel: Tuple[int, int]
    regressor: str = "conv"
    relu: bool = True

    @nn.compact
    def __call__(self, x):
        x = f32(x)
        fan_in = x.shape[-1] * (9 if self.regressor == "conv3x3" else self.kernel[0] * self.kernel[1])
        conv = dict(kernel_init=TORCH_DEFAULT_KERNEL, bias_init=torch_uniform_bias(fan_in), precision=HIGHEST,
                    param_dtype=F32, dtype=F32, name="conv")
        if self.regressor == "conv3x3":
            x = nn.Conv(self.teacher_channels, (3, 3), padding=((1, 1), (1, 1)), **conv)(x)
            x = BatchStatNorm(name="bn")(x)
        else:
            x = nn.Conv(self.teacher_channels, tuple(self.kernel), padding="VALID", **conv)(x)
        return nn.relu(x) if self.relu else x


def _regressor(s_feat, t_feat, regressor: str, relu: bool) -> FitNetRegressor:
    return FitNetRegressor(int(t_feat.shape[-1]), regressor_kernel(s_feat.shape, t_feat.shape), regressor, relu)


def fitnet_init(rng, s_feat, t_feat, regressor: str = "conv", relu: bool = True) -> dict:
    """Regressor parameters sized from the two NHWC maps (arrays or shape structs)."""
    return _regressor(s_feat, t_feat, regressor, relu).init(rng, jnp.zeros(s_feat.shape, F32))["params"]


def fitnet_loss(params, s_feat, t_feat, regressor: str = "conv", relu: bool = True):
    """mean((r(s) − t)²) over all N·H_t·W_t·C_t elements; the teacher map gets no gradient."""
    t = jax.lax.stop_gradient(f32(t_feat))
    out = _regressor(s_feat, t_feat, regressor, relu).apply({"params": params}, f32(s_feat))
    return jnp.mean(jnp.square(out - t))



def _shapes(e, s, t):
    if len(s) != 4 or len(t) != 4:
        return f"needs NHWC feature maps on both sides, got student {list(s)} and teacher {list(t)}"
    if e.params["regressor"] == "conv3x3" and s[1:3] != t[1:3]:
        return (f"regressor='conv3x3' needs equal H and W, got student {list(s)} and teacher {list(t)}; "
                "use regressor='conv' (kernel H_s − H_t + 1) or other keys")
    if s[1] < t[1] or s[2] < t[2]:
        return (f"the student map {list(s)} is smaller than the teacher's {list(t)}: the regressor (a valid "
                "convolution) cannot enlarge it; pick an earlier student feature or a later teacher one")
    return None


register_loss(LossSpec(
    "fitnet", "FitNet hint: MSE of regressor(student map) vs teacher map", "FitNet: Romero et al., ICLR 2015",
    "pairs", "unused", dict(regressor="conv", relu=True),
    lambda e, a, b, ctx: (fitnet_loss(ctx.params, a[e.s_key], b[e.t_key], e.params["regressor"], e.params["relu"]),),
    checks=dict(regressor=one_of(*REGRESSORS), relu=boolean), shape_check=_shapes, learnable=True,
    init=lambda e, a, b, rng: fitnet_init(rng, a[e.s_key], b[e.t_key], e.params["regressor"], e.params["relu"]),
    # conv3x3's BatchNorm normalises with the statistics of the whole batch
    separable=lambda e, batch: e.params["regressor"] != "conv3x3"))  # conv3x3's BatchNorm uses batch statistics
