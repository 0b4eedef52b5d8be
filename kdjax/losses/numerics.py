"""Float32 casting, NaN-free norms and an accurate softmax: the numerics every loss family shares."""

import jax
import jax.numpy as jnp

F32 = jnp.float32


def f32(x):
    """Float32 view of an input: losses are computed in float32 even for bf16 activations."""
    return jnp.asarray(x).astype(F32)


def safe_norm(x, axis):
    """L2 norm whose gradient at the zero vector is 0 instead of NaN (duplicate rows, flat softmaxes)."""
    sq = jnp.sum(x * x, axis=axis)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def l2_normalize(x, axis, eps: float = 1e-12):
    """paddle F.normalize: x / max(|x|, eps); a zero vector stays zero, with slope 1/eps there."""
    return x / jnp.expand_dims(jnp.maximum(safe_norm(x, axis), eps), axis)


@jax.custom_vjp
def _softmax_last(z):
    return jax.nn.softmax(z, axis=-1)


def _softmax_fwd(z):
    y = jax.nn.softmax(z, axis=-1)
    return y, y


def _softmax_bwd(y, g):
    # y ⊙ (g − <y, g>) with g shifted by its value at each row's top class: the top class, whose
    # probability is ~1 for a saturated row, then gets Σ_{j≠top} y_j (g_top − g_j) without the
    # catastrophic cancellation of g_top − <y, g> (PaddleClas' float32 gradients are this accurate).
    top = jax.nn.one_hot(jnp.argmax(y, axis=-1), y.shape[-1], dtype=y.dtype)
    d = g - jnp.sum(g * top, axis=-1, keepdims=True)
    # <y, d> once more on the residuals d − <y, d>: where an entry's d is close to the mean (its gradient a
    # small difference) the first sum's rounding (~eps·Σ y|d|) would dominate; the correction is a sum of
    # small numbers, so the difference keeps ~eps·Σ y|d − <y, d>| instead
    c = jnp.sum(y * d, axis=-1, keepdims=True)
    r = d - c
    return (y * (r - jnp.sum(y * r, axis=-1, keepdims=True)),)


_softmax_last.defvjp(_softmax_fwd, _softmax_bwd)


def softmax(x, axis: int = -1):
    """jax.nn.softmax with a gradient that stays accurate for saturated (±30 logit) rows.

    A custom VJP: reverse-mode only (jax.grad, vjp); forward-mode jvp/jacfwd through it is unsupported.
    """
    if axis in (-1, x.ndim - 1):
        return _softmax_last(x)
    return jnp.moveaxis(_softmax_last(jnp.moveaxis(x, axis, -1)), -1, axis)


def log_softmax(x, axis: int = -1):
    """log softmax with full relative precision where a probability is close to 1.

    jax.nn.log_softmax gives the top class (z − max) − log(Σ exp(z − max)) = −log(1 + ε), and 1 + ε rounds
    away most of a small ε in float32: a confident row's log-probability (a small cross-entropy) then has a
    relative error up to ~1e-7 / ε. Here the top class's own exp(0) = 1 is kept out of the sum and the log
    is log1p(ε). Other entries are unchanged. Differentiable (the argmax is a constant).
    """
    z = jnp.moveaxis(x, axis, -1)
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    top = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=bool)
    rest = jnp.sum(jnp.where(top, 0.0, jnp.exp(z - m)), axis=-1, keepdims=True)
    # the top entry's exp(z_top − m) is 1 exactly in the forward pass; written out so its gradient stays right
    head = jnp.sum(jnp.where(top, jnp.exp(z - m), 0.0), axis=-1, keepdims=True)
    out = (z - m) - jnp.log1p(rest + (head - 1.0))
    return jnp.moveaxis(out, -1, axis)
