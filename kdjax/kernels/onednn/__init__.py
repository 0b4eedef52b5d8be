"""2-D convolutions through oneDNN on XLA:CPU, as XLA FFI custom calls (forward, input and weight gradient).

    from kdjax.kernels import onednn
    if onednn.available():
        y = onednn.conv2d(x, w, strides=(1, 1), padding=((1, 1), (1, 1)), groups=1, dilation=(1, 1))

`conv2d` computes `lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
feature_group_count=groups, rhs_dilation=dilation)`, with a `jax.custom_vjp` whose backward pass is oneDNN's
backward-data and backward-weights convolutions. Works under `jax.jit` and `jax.grad` (not `vmap`). Anything the
kernels do not take (not on CPU, dtypes other than float32 / bfloat16, negative padding, a convolution oneDNN only
has its slow reference implementation for) goes to `lax.conv_general_dilated` unchanged.

The kernels are C++ (`conv.cc`) compiled by `build.py`, which install.sh runs, into `_onednn_conv.so` in this
folder (git-ignored). When it is missing or does not load, `available()` is False, `why_unavailable()` says why,
and `conv2d` is `lax.conv_general_dilated` (with one warning line per process).
"""

import ctypes
import functools
import os
import re
import sys
import threading
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.path.join(HERE, "_onednn_conv.so")
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
BUILD_HINT = "build it with `bash install.sh` or `python kdjax/kernels/onednn/build.py`"

_TARGETS = {"kdjax_onednn_conv_fwd": "KdjaxOnednnConvForward",
            "kdjax_onednn_conv_bwd_data": "KdjaxOnednnConvBackwardData",
            "kdjax_onednn_conv_bwd_weights": "KdjaxOnednnConvBackwardWeights"}
_DTYPES = {jnp.dtype(jnp.float32): 0, jnp.dtype(jnp.bfloat16): 1}
_KINDS = (0, 1, 2)  # forward, backward data, backward weights

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_error: Optional[str] = None
_warned = False


def _load() -> Optional[ctypes.CDLL]:
    """Loads the library and registers its FFI targets once per process; None (and `_error`) when it cannot."""
    global _lib, _error
    with _lock:
        if _lib is not None or _error is not None:
            return _lib
        try:
            if not os.path.exists(LIBRARY):
                raise RuntimeError(f"{LIBRARY} is not built; {BUILD_HINT}")
            lib = ctypes.CDLL(LIBRARY)
            lib.kdjax_onednn_info.argtypes = [ctypes.c_char_p, ctypes.c_int64]
            lib.kdjax_onednn_impl.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_int64]
            buf = ctypes.create_string_buffer(512)
            if not lib.kdjax_onednn_info(buf, len(buf)):
                raise RuntimeError(f"oneDNN does not start: {buf.value.decode()}")
            for target, symbol in _TARGETS.items():
                jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
            _lib = lib
            ok, why = _query(lib, (2, 8, 8, 16), (3, 3, 16, 16), 0, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
            if not ok:
                _lib = None
                raise RuntimeError(f"oneDNN has no float32 convolution here: {why}")
        except (OSError, RuntimeError, AttributeError) as e:  # a missing libdnnl.so.N is an OSError
            _error = str(e)
        return _lib


def available() -> bool:
    """True when the kernels are built, load, and run float32 convolutions on this CPU."""
    return _load() is not None


def why_unavailable() -> str:
    """Why `available()` is False ('' when it is True)."""
    _load()
    return _error or ""


def info() -> str:
    """oneDNN version, its threading runtime, ISA (dnnl_cpu_isa_t value) and the threading mode used."""
    lib = _load()
    if lib is None:
        return "unavailable: " + (_error or "")
    buf = ctypes.create_string_buffer(512)
    lib.kdjax_onednn_info(buf, len(buf))
    return buf.value.decode()


def set_threading(mode: str) -> str:
    """"xla" (default: batch chunks on XLA's thread pool, oneDNN single-threaded in each) or "omp" (oneDNN's
    OpenMP threads); returns the previous mode. Also settable with KDJAX_ONEDNN_THREADING before the first call."""
    lib = _load()
    if lib is None:
        raise RuntimeError(why_unavailable())
    return ("xla", "omp")[lib.kdjax_onednn_set_threading(1 if mode == "omp" else 0)]


def set_chunks_per_thread(k: int) -> int:
    """Batch chunks per XLA thread in "xla" threading (default 1, or KDJAX_ONEDNN_CHUNKS_PER_THREAD); returns the
    previous value."""
    lib = _load()
    if lib is None:
        raise RuntimeError(why_unavailable())
    return lib.kdjax_onednn_set_chunks_per_thread(int(k))


def warn_unavailable_once() -> None:
    """The one warning line a process prints when oneDNN convolutions were asked for but cannot be used."""
    global _warned
    if not _warned:
        _warned = True
        print(f"kdjax: warning: oneDNN convolutions unavailable ({why_unavailable()}); using XLA's",
              file=sys.stderr, flush=True)


def _params(x_shape, w_shape, dtype_code, strides, padding, dilation, groups, kind, nthr=1):
    n, h, wd, c = x_shape
    kh, kw, _, o = w_shape
    oh, ow = _out_hw(x_shape, w_shape, strides, padding, dilation)
    (plh, prh), (plw, prw) = padding
    return [n, h, wd, c, kh, kw, o, oh, ow, strides[0], strides[1], plh, plw, prh, prw, dilation[0], dilation[1],
            groups, dtype_code, kind, nthr]


def _query(lib, x_shape, w_shape, dtype_code, strides, padding, dilation, groups, verbose=False):
    """(ok, why): whether oneDNN has a non-reference implementation of all three kinds of this convolution."""
    buf = ctypes.create_string_buffer(512)
    impls = []
    for kind in _KINDS:
        p = (ctypes.c_int64 * 21)(*_params(x_shape, w_shape, dtype_code, strides, padding, dilation, groups, kind))
        if not lib.kdjax_onednn_impl(p, buf, len(buf)):
            return False, buf.value.decode()
        impls.append(buf.value.decode())
    impls = [i.split(" (")[0] for i in impls] if not verbose else impls
    if any(i.startswith("ref") for i in impls):  # correct but far slower than XLA's
        return False, "reference implementation only: " + ", ".join(impls)
    return True, ", ".join(impls)


@functools.lru_cache(maxsize=None)
def supported(x_shape, w_shape, dtype, strides, padding, dilation=(1, 1), groups: int = 1) -> Tuple[bool, str]:
    """(ok, what): whether `conv2d` runs this convolution through oneDNN, and the implementations (or why not)."""
    lib = _load()
    if lib is None:
        return False, _error or ""
    code = _DTYPES.get(jnp.dtype(dtype))
    if code is None:
        return False, f"dtype {jnp.dtype(dtype)}: oneDNN path takes float32 and bfloat16"
    if len(x_shape) != 4 or len(w_shape) != 4:
        return False, "not a 2-D convolution"
    c, (kh, kw, cg, o) = x_shape[3], w_shape
    if groups < 1 or c % groups or o % groups or cg * groups != c:
        return False, "channels do not match groups"
    if any(p < 0 for pair in padding for p in pair) or min(strides) < 1 or min(dilation) < 1:
        return False, "negative padding / non-positive stride or dilation"
    if 0 in x_shape or 0 in w_shape or min(_out_hw(x_shape, w_shape, strides, padding, dilation)) < 1:
        return False, "empty operand or output"
    return _query(lib, x_shape, w_shape, code, strides, padding, dilation, groups)


def implementations(x_shape, w_shape, dtype=jnp.float32, strides=(1, 1), padding=((0, 0), (0, 0)),
                    dilation=(1, 1), groups: int = 1) -> str:
    """oneDNN's implementation and scratchpad size of the forward, backward-data and backward-weights primitives
    (as created for one thread and the whole batch), or why there is none."""
    lib = _load()
    if lib is None:
        return "unavailable: " + (_error or "")
    return _query(lib, tuple(x_shape), tuple(w_shape), _DTYPES[jnp.dtype(dtype)], tuple(strides),
                  tuple(map(tuple, padding)), tuple(dilation), groups, verbose=True)[1]


def _out_hw(x_shape, w_shape, strides, padding, dilation):
    return tuple((x_shape[1 + i] + padding[i][0] + padding[i][1] - ((w_shape[i] - 1) * dilation[i] + 1)) // strides[i]
                 + 1 for i in range(2))


def _attrs(strides, padding, dilation, groups):
    return dict(strides=np.asarray(strides, np.int64), padding=np.asarray(padding, np.int64).reshape(4),
                dilation=np.asarray(dilation, np.int64), groups=int(groups))


def _forward(x, w, strides, padding, groups, dilation):
    oh, ow = _out_hw(x.shape, w.shape, strides, padding, dilation)
    out = jax.ShapeDtypeStruct((x.shape[0], oh, ow, w.shape[3]), x.dtype)
    return jax.ffi.ffi_call("kdjax_onednn_conv_fwd", out)(x, w, **_attrs(strides, padding, dilation, groups))


def input_grad(dy, w, x_shape, strides, padding, groups, dilation=(1, 1), after=None):
    """dL/dX given dL/dY (oneDNN backward data). `after`: an array XLA must compute first (not read)."""
    order = jnp.zeros((), dy.dtype) if after is None else after
    out = jax.ShapeDtypeStruct(tuple(x_shape), dy.dtype)
    return jax.ffi.ffi_call("kdjax_onednn_conv_bwd_data", out)(dy, w, order,
                                                                 **_attrs(strides, padding, dilation, groups))


def weight_grad(x, dy, w_shape, strides, padding, groups, dilation=(1, 1)):
    """dL/dW given dL/dY (oneDNN backward weights)."""
    out = jax.ShapeDtypeStruct(tuple(w_shape), x.dtype)
    return jax.ffi.ffi_call("kdjax_onednn_conv_bwd_weights", out)(x, dy, **_attrs(strides, padding, dilation, groups))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, w, strides, padding, groups, dilation):
    return _forward(x, w, strides, padding, groups, dilation)


def _conv_fwd(x, w, strides, padding, groups, dilation):
    return _forward(x, w, strides, padding, groups, dilation), (x, w)


def _conv_bwd(strides, padding, groups, dilation, res, dy):
    x, w = res
    dw = weight_grad(x, dy, w.shape, strides, padding, groups, dilation)
    # dX only after dW (`after` is an operand the kernel does not read): XLA then computes each layer's weight
    # gradient while its activations and dY are at hand, instead of deferring every dW to the end of the backward
    # pass with all those buffers alive (the same ordering kdjax.kernels.conv gets with a data dependency)
    dx = input_grad(dy, w, x.shape, strides, padding, groups, dilation, after=dw)
    return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def _normalize_padding(padding, x_shape, w_shape, strides, dilation):
    if isinstance(padding, str):
        window = [(w_shape[i] - 1) * dilation[i] + 1 for i in range(2)]
        padding = lax.padtype_to_pads(x_shape[1:3], window, strides, padding)
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def usable(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), groups: int = 1, dilation=(1, 1)) -> bool:
    """Whether `conv2d(x, w, ...)` would run through oneDNN (x, w: arrays or anything with .shape and .dtype)."""
    if x.dtype != w.dtype or jax.default_backend() != "cpu" or not available():
        return False
    strides = tuple(int(s) for s in strides)
    dilation = tuple(int(d) for d in dilation)
    padding = _normalize_padding(padding, x.shape, w.shape, strides, dilation)
    return supported(tuple(x.shape), tuple(w.shape), jnp.dtype(x.dtype), strides, padding, dilation, int(groups))[0]


def conv2d(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), groups: int = 1, dilation=(1, 1)):
    """`lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=groups, rhs_dilation=dilation)` through oneDNN where it can (see the module doc).
    x: (N, H, W, C), w: (KH, KW, C / groups, O); padding: ((lo, hi), (lo, hi)) or "SAME" / "VALID"."""
    strides = tuple(int(s) for s in strides)
    dilation = tuple(int(d) for d in dilation)
    groups = int(groups)
    padding = _normalize_padding(padding, x.shape, w.shape, strides, dilation)
    if not available():
        warn_unavailable_once()
    elif usable(x, w, strides, padding, groups, dilation):
        return _conv(x, w, strides, padding, groups, dilation)
    return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=DIMENSION_NUMBERS, feature_group_count=groups)


_TARGET = re.compile(r'custom_call_target="(kdjax_onednn_conv_\w+)"')
_ARRAY = re.compile(r"\b(?:f32|bf16)\[([\d,]*)\]")


def _dims(text: str):
    return [tuple(int(d) for d in dims.split(",") if d) for dims in _ARRAY.findall(text)]


def _attr(line: str, name: str, size: int):
    """An integer array attribute of the call's backend_config: `name = dense<1> : ...` or `dense<[2, 2]> : ...`."""
    m = re.search(name + r" = dense<\[?([-\d, ]+)\]?>", line)
    values = [int(v) for v in m.group(1).split(",")]
    return values * size if len(values) == 1 else values


def _taps(size, out, k, stride, pad_lo, dilation):
    """Multiply-adds per output column along one spatial axis that read the input, not the padding."""
    return sum(1 for o in range(out) for t in range(k) if 0 <= o * stride - pad_lo + t * dilation < size)


def hlo_flops(hlo_text: str) -> float:
    """FLOPs of the oneDNN convolutions in a compiled module's text (`compiled.as_text()`), which XLA's cost analysis
    counts as zero (custom calls are opaque to it). Counted as XLA counts a convolution: 2 per multiply-add that
    reads the input, not the padding; the same number for the forward call (x, w) -> y, backward data
    (dY, w, order) -> dX and backward weights (x, dY) -> dW. Operand shapes come from the call's
    operand_layout_constraints (the compiled text names operands without shapes), strides etc. from its attributes."""
    total = 0.0
    for line in hlo_text.splitlines():
        m = _TARGET.search(line)
        if not m or "custom-call(" not in line:
            continue
        result = _dims(line[:line.index("custom-call(")])[0]
        constraints = line.split("operand_layout_constraints={", 1)
        operands = _dims(constraints[1].split("}, api_version", 1)[0] if len(constraints) == 2
                         else line[line.index("custom-call("):])
        kind = m.group(1)
        if kind == "kdjax_onednn_conv_fwd":
            x, w, y = operands[0], operands[1], result
        elif kind == "kdjax_onednn_conv_bwd_data":
            x, w, y = result, operands[1], operands[0]
        else:  # bwd_weights
            x, w, y = operands[0], result, operands[1]
        strides, dilation, padding = _attr(line, "strides", 2), _attr(line, "dilation", 2), _attr(line, "padding", 4)
        groups = int(re.search(r"groups = (\d+)", line).group(1))
        pad_lo = (padding[0], padding[2])  # (lo_h, hi_h, lo_w, hi_w), as _attrs writes it
        taps = [_taps(x[1 + i], y[1 + i], w[i], strides[i], pad_lo[i], dilation[i]) for i in range(2)]
        total += 2.0 * y[0] * y[3] * (x[3] // groups) * taps[0] * taps[1]
    return total
