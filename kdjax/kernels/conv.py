"""A 2-D convolution (NHWC, HWIO) with its own VJP, for XLA:CPU.

`conv2d(x, w, strides, padding, groups)` computes exactly `lax.conv_general_dilated(x, w, strides, padding,
("NHWC", "HWIO", "NHWC"), feature_group_count=groups)`; what differs is how the backward pass is formed:

* Input gradient of a strided convolution. XLA writes it as a stride-1 convolution over the output gradient
  dilated with zeros (`lhs_dilate=2x2`): at stride 2, 3 of every 4 multiply-adds are by zero, and on the CPU
  they are all executed. Here it is split by output phase (sub-pixel decomposition): the positions
  p ≡ r (mod s) of dX receive only the taps i ≡ r + pad (mod s), so each phase is a small dense stride-1
  convolution of dY with those taps (1, 2 or 4 taps of a 3×3 kernel at stride 2), and the s² phases are
  interleaved back. Exactly the needed multiply-adds; one extra memory-bound interleave.
* Weight gradient: XLA's own (measured faster here than forming it as per-tap patches × dY products; see
  benchmarks/README.md).

Values and gradients match lax.conv_general_dilated to float32 rounding (tests/unit/test_kernels.py). Used where
`kdjax.kernels` chooses it (XLA:CPU by default).
"""

import os
import sys
from functools import partial
from typing import Tuple

import jax
import jax.numpy as jnp
from jax import lax

from kdjax import kernels

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Which convolution the zoo's layers trace with (read when a model is traced, see `conv_choice`): "xla" (this
# module's VJP over lax.conv_general_dilated, or lax's own, as `kdjax.kernels` chose) or "onednn"
# (kdjax/kernels/onednn, FFI calls into oneDNN, XLA:CPU only; also `config.kernels='onednn'`).
CONV_CHOICES = ("xla", "onednn")
BACKEND = os.environ.get("KDJAX_CONV", "xla")


def _xla_conv(x, w, strides, padding, groups):
    return lax.conv_general_dilated(x, w, window_strides=strides, padding=padding,
                                    dimension_numbers=DIMENSION_NUMBERS, feature_group_count=groups)


def input_grad_phases(dy, w, x_shape, strides, padding):
    """dL/dX of `_xla_conv(x, w, strides, padding, 1)` given dL/dY, by output phase (see module doc)."""
    n, h, wd, c = x_shape
    kh, kw, _, k = w.shape
    dims = ((h, kh, strides[0], padding[0], dy.shape[1]), (wd, kw, strides[1], padding[1], dy.shape[2]))

    def phase_plan(size, ksize, s, pad, out):
        lo = pad[0]
        plans = []
        for r in range(s):
            m = max(0, -(-(size - r) // s))          # positions p = s*m + r inside [0, size)
            i0 = (r + lo) % s
            taps = max(0, -(-(ksize - i0) // s))      # taps i0, i0 + s, ... below ksize
            cshift = (r + lo - i0) // s
            plans.append((r, m, i0, taps, (taps - 1 - cshift, m + cshift - out)))
        return plans

    plans_h = phase_plan(*dims[0])
    plans_w = phase_plan(*dims[1])
    mh = max(p[1] for p in plans_h)
    mw = max(p[1] for p in plans_w)
    rows = []
    for (_, m_h, i0h, th, pad_h) in plans_h:
        cols = []
        for (_, m_w, i0w, tw, pad_w) in plans_w:
            if th == 0 or tw == 0 or m_h == 0 or m_w == 0:
                part = jnp.zeros((n, m_h, m_w, c), dy.dtype)
            else:
                v = w[i0h::strides[0], i0w::strides[1]][::-1, ::-1]   # (th, tw, C, K), flipped
                v = jnp.swapaxes(v, 2, 3)                             # (th, tw, K, C)
                part = lax.conv_general_dilated(dy, v, (1, 1), (pad_h, pad_w), dimension_numbers=DIMENSION_NUMBERS)
            part = jnp.pad(part, ((0, 0), (0, mh - m_h), (0, mw - m_w), (0, 0)))
            cols.append(part)
        rows.append(jnp.stack(cols, axis=3))                      # (N, mh, mw, s_w, C)
    full = jnp.stack(rows, axis=2)                                # (N, mh, s_h, mw, s_w, C)
    full = full.reshape(n, mh * strides[0], mw * strides[1], c)
    return full[:, :h, :wd, :]


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_custom_vjp(x, w, strides: Tuple[int, int], padding, groups: int):
    """`_xla_conv` with the backward pass of this module (always; `conv2d` picks when to use it)."""
    return _xla_conv(x, w, strides, padding, groups)


def _fwd(x, w, strides, padding, groups):
    return _xla_conv(x, w, strides, padding, groups), (x, w)


def _bwd(strides, padding, groups, res, dy):
    x, w = res
    if _phase_split(strides, w.shape, groups):
        dx = input_grad_phases(dy, w, x.shape, strides, padding).astype(x.dtype)
        _, dw_fn = jax.vjp(lambda w_: _xla_conv(x, w_, strides, padding, groups), w)
        (dw,) = dw_fn(dy)
    else:
        _, fn = jax.vjp(lambda x_, w_: _xla_conv(x_, w_, strides, padding, groups), x, w)
        dx, dw = fn(dy)
    # dX is released to the rest of the backward pass only together with dW: XLA then computes each layer's weight
    # gradient while its input and output gradient are still at hand, instead of deferring every dW to the end of
    # the backward pass (which keeps all those activations alive at once whenever the update waits on all
    # gradients, as kdjax's non-finite guard makes it). A non-finite dW makes dX non-finite too; that step is
    # dropped or stops the run either way.
    dx = dx + (jnp.sum(dw) * 0.0).astype(dx.dtype)
    return dx, dw


def _phase_split(strides, w_shape, groups) -> bool:
    return any(s > 1 for s in strides) and groups == 1 and w_shape[0] * w_shape[1] > 1


conv2d_custom_vjp.defvjp(_fwd, _bwd)


def conv2d(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), groups: int = 1):
    """`lax.conv_general_dilated(x, w, strides, padding, ("NHWC", "HWIO", "NHWC"), feature_group_count=groups)`;
    strided convolutions without groups get the phase-split input gradient. `padding`: ((lo, hi), (lo, hi))."""
    strides = tuple(int(s) for s in strides)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return conv2d_custom_vjp(x, w, strides, padding, int(groups))


def flax_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                              dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """Drop-in for `lax.conv_general_dilated` as Flax's `nn.Conv(conv_general_dilated=...)` calls it: 2-D NHWC/HWIO
    convolutions with explicit padding and no dilation go through `conv2d` where `kdjax.kernels` chose this VJP
    (XLA:CPU); anything else to lax unchanged."""
    if conv_choice() == "onednn":
        y = onednn_conv(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                        feature_group_count, precision, **kwargs)
        if y is not None:
            return y
    conv = kernels.current().conv
    if conv == "onednn":  # a shape (or backend) oneDNN does not take: the same kernels set's other convolution
        conv = "custom_vjp" if jax.default_backend() == "cpu" else "xla"
    plain = (conv == "custom_vjp" and lhs.ndim == 4 and not kwargs and precision is None
             and not isinstance(padding, str)
             and all(d in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
             and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape))
    if plain:
        return conv2d(lhs, rhs, window_strides, padding, feature_group_count)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, precision=precision, **kwargs)


_warned_choice = False


def conv_choice(choice=None) -> str:
    """The convolution implementation in effect: `choice` if given, else "onednn" where the kernels set being traced
    asks for it (`config.kernels='onednn'`, or KDJAX_CONV=onednn), else `BACKEND` (KDJAX_CONV, default "xla"). An
    unknown name is said once and means "xla"."""
    global _warned_choice
    if choice is None and kernels.current().conv == "onednn":
        return "onednn"
    name = BACKEND if choice is None else choice
    if name in CONV_CHOICES:
        return name
    if not _warned_choice:
        _warned_choice = True
        print(f"kdjax: warning: unknown convolution choice {name!r} (KDJAX_CONV: one of {list(CONV_CHOICES)}); "
              "using 'xla'", file=sys.stderr, flush=True)
    return "xla"


def onednn_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None, **kwargs):
    """The convolution through oneDNN (kdjax/kernels/onednn) when it can take it: a 2-D NHWC/HWIO convolution
    without input dilation, on XLA:CPU, with the kernels built and a non-reference oneDNN implementation for this
    shape and dtype. Otherwise None (the caller uses XLA's); when the kernels are missing or this CPU has no
    usable ISA, the process says so once."""
    if lhs.ndim != 4 or kwargs or precision is not None or any(d != 1 for d in lhs_dilation or ()) \
            or not _is_nhwc(dimension_numbers, lhs.shape, rhs.shape):
        return None
    from kdjax.kernels import onednn

    dilation = tuple(rhs_dilation or (1, 1))
    if onednn.usable(lhs, rhs, window_strides, padding, feature_group_count, dilation):
        return onednn.conv2d(lhs, rhs, window_strides, padding, feature_group_count, dilation)
    if not onednn.available():
        onednn.warn_unavailable_once()
    return None


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
    if dimension_numbers is None:
        return False
    want = lax.conv_dimension_numbers(lhs_shape, rhs_shape, DIMENSION_NUMBERS)
    got = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    return tuple(want) == tuple(got)
