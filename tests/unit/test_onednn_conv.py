"""oneDNN convolution kernels (kdjax/kernels/onednn) against lax.conv_general_dilated: forward, input gradient and
weight gradient for every distinct convolution of the model zoo, plus the cases the zoo does not have (dilation,
asymmetric padding, odd batches, bfloat16), thread safety, and the fallback when the kernels are not built."""

import hashlib
import os
import re
import subprocess
import sys
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.extend import core as jcore

from kdjax.kernels import onednn
from kdjax import models
from kdjax.kernels import conv as fast_conv
from kdjax.models import list_models, get_model
from kdjax.models.layers import ConvBN

needs_kernels = pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN kernels not built ({onednn.why_unavailable()}); {onednn.BUILD_HINT}")

DN = ("NHWC", "HWIO", "NHWC")
# zoo input sizes: CIFAR families at 32x32, Fashion-MNIST ConvNets at 28x28x1, ImageNet families at 56x56 (small,
# and odd sizes appear deeper in: 56 -> 28 -> 14 -> 7 -> 4)
CIFAR = re.compile(r"^(resnet\d+(x4)?|wrn_\d+_\d+|vgg\d+|MobileNetV2_cifar|ShuffleV[12])$")


def _input_shape(name, model):
    if getattr(model, "img_size", None):  # ViT / DeiT: built for one image size (patch embedding is an einsum)
        size = model.img_size if isinstance(model.img_size, (tuple, list)) else (model.img_size,) * 2
        return (2, *size, model.in_chans)
    if name.lower().startswith("convnet"):
        return (2, 28, 28, 1)
    return (2, 32, 32, 3) if CIFAR.match(name) else (2, 56, 56, 3)


def _collect(jaxpr, out):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            p = eqn.params
            assert tuple(p["lhs_dilation"]) == (1, 1) and p["batch_group_count"] == 1
            assert p["dimension_numbers"] == lax.conv_dimension_numbers(eqn.invars[0].aval.shape,
                                                                       eqn.invars[1].aval.shape, DN)
            out.add((tuple(eqn.invars[0].aval.shape), tuple(eqn.invars[1].aval.shape), tuple(p["window_strides"]),
                     tuple(tuple(int(v) for v in pair) for pair in p["padding"]), int(p["feature_group_count"]),
                     tuple(p["rhs_dilation"])))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, jcore.ClosedJaxpr):
                    _collect(sub.jaxpr, out)
                elif isinstance(sub, jcore.Jaxpr):
                    _collect(sub, out)


def _trace_zoo():
    convs = set()
    for name in list_models():
        model = get_model(name, num_classes=10) if name.lower().startswith("convnet") else get_model(name)
        x = jax.ShapeDtypeStruct(_input_shape(name, model), jnp.float32)
        jaxpr = jax.make_jaxpr(lambda x: model.init(jax.random.PRNGKey(0), x, train=True))(x)
        _collect(jaxpr.jaxpr, convs)
    return sorted(convs)


@pytest.fixture(scope="module")
def zoo_convs(request):
    """Every distinct (x shape, w shape, strides, padding, groups, dilation) of every registered model, traced
    (training mode, batch 2) with XLA's convolutions so the jaxpr shows them. Tracing ~50 models takes 15-35 s
    here, so the list is kept in pytest's cache, keyed by the zoo's source and the jax version."""
    models_dir = os.path.dirname(models.__file__)
    digest = hashlib.sha256(jax.__version__.encode())
    for name in sorted(os.listdir(models_dir)):
        if name.endswith(".py"):
            with open(os.path.join(models_dir, name), "rb") as f:
                digest.update(name.encode() + f.read())
    key = f"kdjax/onednn_zoo_convs/{digest.hexdigest()[:16]}"
    cache = getattr(request.config, "cache", None)
    cached = cache.get(key, None) if cache is not None else None
    if cached is not None:
        return [(tuple(x), tuple(w), tuple(s), tuple(map(tuple, p)), g, tuple(d)) for x, w, s, p, g, d in cached]
    convs = _trace_zoo()
    if cache is not None:
        cache.set(key, convs)
    return convs


def _reference(x, w, strides, padding, groups, dilation):
    return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=DN,
                                    feature_group_count=groups)


def _ours(x, w, strides, padding, groups, dilation):
    return onednn.conv2d(x, w, strides, padding, groups, dilation)


def _value_and_grads(conv, cases):
    """One jitted function: (y, dL/dx, dL/dw) of every case for the cotangent dy given with it."""

    def run(xs, ws, dys):
        outs = []
        for (_, _, strides, padding, groups, dilation), x, w, dy in zip(cases, xs, ws, dys):
            y, vjp = jax.vjp(lambda a, b: conv(a, b, strides, padding, groups, dilation), x, w)
            outs.append((y,) + vjp(dy))
        return outs

    return jax.jit(run)


def _out_shape(case):
    x_shape, w_shape, strides, padding, _, dilation = case
    hw = [(x_shape[1 + i] + padding[i][0] + padding[i][1] - (w_shape[i] - 1) * dilation[i] - 1) // strides[i] + 1
          for i in range(2)]
    return (x_shape[0], hw[0], hw[1], w_shape[3])


def _check(cases, dtype=jnp.float32, rtol=2e-5, seed=0):
    """Compares ours with lax on random operands; returns the failures as readable lines."""
    rng = np.random.default_rng(seed)
    xs = [jnp.asarray(rng.standard_normal(c[0]), dtype) for c in cases]
    ws = [jnp.asarray(rng.standard_normal(c[1]), dtype) for c in cases]
    dys = [jnp.asarray(rng.standard_normal(_out_shape(c)), dtype) for c in cases]
    ref_args = (xs, ws, dys)
    if dtype == jnp.bfloat16:  # reference: float32 on the same (bf16-rounded) values
        ref_args = [[a.astype(jnp.float32) for a in v] for v in ref_args]
    # LLVM optimisation off for the reference: compiling hundreds of XLA convolutions + transposes takes ~10x longer
    # than running them here; the convolutions themselves are Eigen library calls either way
    ref = _value_and_grads(_reference, cases).lower(*ref_args).compile(
        compiler_options={"xla_backend_optimization_level": 0})(*ref_args)
    ours = _value_and_grads(_ours, cases)(xs, ws, dys)
    failures = []
    for case, r3, o3 in zip(cases, ref, ours):
        for what, r, o in zip(("forward", "input grad", "weight grad"), r3, o3):
            r, o = np.asarray(r, np.float32), np.asarray(o.astype(jnp.float32))
            scale = float(np.max(np.abs(r))) or 1.0
            err = float(np.max(np.abs(r - o))) / scale
            if o.shape != r.shape or not err <= rtol:
                failures.append(f"{what} of x{case[0]} w{case[1]} strides {case[2]} padding {case[3]} groups "
                                f"{case[4]} dilation {case[5]}: max |diff| / max |ref| = {err:.2e}")
    return failures


def test_zoo_enumeration_covers_the_kinds(zoo_convs):
    kinds = {(c[1][0], c[2][0], "depthwise" if c[4] > 1 and c[4] == c[0][3] else ("grouped" if c[4] > 1 else ""))
             for c in zoo_convs}
    for kind in [(3, 1, ""), (3, 2, ""), (1, 1, ""), (1, 2, ""), (7, 2, ""), (3, 1, "depthwise"),
                 (3, 2, "depthwise"), (5, 1, "depthwise"), (1, 1, "grouped")]:
        assert kind in kinds, kind
    assert len(zoo_convs) > 200


@needs_kernels
def test_every_zoo_convolution_runs_through_onednn(zoo_convs):
    refused = [(c, onednn.supported(c[0], c[1], jnp.dtype(jnp.float32), c[2], c[3], c[5], c[4])[1])
               for c in zoo_convs
               if not onednn.supported(c[0], c[1], jnp.dtype(jnp.float32), c[2], c[3], c[5], c[4])[0]]
    assert not refused, refused


@needs_kernels
def test_every_zoo_convolution_matches_lax(zoo_convs):
    failures = []
    for i in range(0, len(zoo_convs), 100):  # a few large jits: compile time, not kernels, dominates
        failures += _check(zoo_convs[i:i + 100])
    assert not failures, "\n".join(failures)


EXTRA = [  # what the zoo does not have: dilation, asymmetric / large padding, odd and unit batches, odd kernels
    ((1, 9, 9, 8), (3, 3, 8, 16), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),
    ((3, 9, 11, 8), (3, 3, 8, 12), (2, 2), ((1, 1), (1, 1)), 1, (1, 1)),
    ((5, 10, 10, 8), (3, 3, 8, 8), (1, 1), ((2, 2), (2, 2)), 1, (2, 2)),
    ((2, 13, 13, 6), (3, 3, 2, 9), (2, 1), ((0, 2), (1, 0)), 3, (2, 1)),
    ((2, 12, 12, 16), (3, 3, 1, 16), (1, 1), ((2, 2), (2, 2)), 16, (2, 2)),
    ((2, 9, 9, 8), (4, 4, 8, 8), (2, 2), ((1, 2), (2, 1)), 1, (1, 1)),
    ((2, 8, 8, 4), (2, 3, 4, 8), (1, 2), ((0, 1), (1, 1)), 1, (1, 1)),
    ((3, 7, 7, 12), (1, 1, 4, 6), (2, 2), ((0, 0), (0, 0)), 3, (1, 1)),
    ((2, 6, 6, 4), (3, 3, 4, 4), (3, 3), ((4, 4), (4, 4)), 1, (1, 1)),
    ((4, 5, 5, 3), (5, 5, 3, 7), (1, 1), ((0, 0), (0, 0)), 1, (1, 1)),
]


@needs_kernels
def test_dilation_asymmetric_padding_odd_batches():
    failures = _check(EXTRA)
    assert not failures, "\n".join(failures)


@needs_kernels
def test_omp_threading_mode_matches_lax():
    previous = onednn.set_threading("omp")
    try:
        failures = _check(EXTRA[:4], seed=1)
    finally:
        onednn.set_threading(previous)
    assert not failures, "\n".join(failures)


@needs_kernels
def test_more_batch_chunks_than_threads_matches_lax():
    previous = onednn.set_chunks_per_thread(3)  # unequal chunks (N=5 -> 2+2+1 on 2 threads), 3+ dW partial sums
    try:
        failures = _check(EXTRA[1:4], seed=2)
    finally:
        onednn.set_chunks_per_thread(previous)
    assert not failures, "\n".join(failures)


@needs_kernels
def test_bfloat16_is_correct_or_refused():
    cases = [((2, 8, 8, 16), (3, 3, 16, 32), (1, 1), ((1, 1), (1, 1)), 1, (1, 1)),
             ((3, 9, 9, 16), (3, 3, 16, 16), (2, 2), ((1, 1), (1, 1)), 1, (1, 1)),
             ((2, 8, 8, 16), (3, 3, 1, 16), (1, 1), ((1, 1), (1, 1)), 16, (1, 1))]
    taken = [c for c in cases if onednn.supported(c[0], c[1], jnp.dtype(jnp.bfloat16), c[2], c[3], c[5], c[4])[0]]
    # bf16 inputs, f32 accumulation: the outputs are rounded to bf16 (8 bits of mantissa)
    failures = _check(cases, dtype=jnp.bfloat16, rtol=2e-2)
    assert not failures, "\n".join(failures)
    if not taken:
        pytest.skip("oneDNN refuses bfloat16 here (conv2d used lax, checked above)")


@needs_kernels
def test_string_padding_and_non_float_dtypes_fall_back():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 4)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 4, 8)), jnp.float32)
    for padding in ("SAME", "VALID"):
        np.testing.assert_allclose(jax.jit(lambda a, b: onednn.conv2d(a, b, (2, 2), padding))(x, w),
                                   lax.conv_general_dilated(x, w, (2, 2), padding, dimension_numbers=DN),
                                   rtol=1e-5, atol=1e-5)
    assert not onednn.usable(x.astype(jnp.float16), w.astype(jnp.float16))
    assert not onednn.usable(x, w, padding=((-1, 0), (0, 0)))
    y = onednn.conv2d(x.astype(jnp.float16), w.astype(jnp.float16), (1, 1), ((1, 1), (1, 1)))
    assert y.dtype == jnp.float16 and y.shape == (2, 9, 9, 8)


@needs_kernels
def test_under_jit_grad_the_kernels_are_the_custom_calls():
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 8))
    hlo = jax.jit(jax.grad(lambda a, b: jnp.sum(onednn.conv2d(a, b, (1, 1), ((1, 1), (1, 1))) ** 2), (0, 1))) \
        .lower(x, w).as_text()
    for target in ("kdjax_onednn_conv_fwd", "kdjax_onednn_conv_bwd_data", "kdjax_onednn_conv_bwd_weights"):
        assert target in hlo
    assert "convolution" not in hlo.replace("kdjax_onednn_conv", "")


@needs_kernels
def test_concurrent_calls_from_threads():
    cases = EXTRA[:6]
    rng = np.random.default_rng(3)
    ops = [(jnp.asarray(rng.standard_normal(c[0]), jnp.float32), jnp.asarray(rng.standard_normal(c[1]), jnp.float32))
           for c in cases]
    fns = [jax.jit(jax.grad(lambda a, b, c=c: jnp.sum(jnp.sin(_ours(a, b, *c[2:]))), (0, 1))) for c in cases]
    refs = [jax.jit(jax.grad(lambda a, b, c=c: jnp.sum(jnp.sin(_reference(a, b, *c[2:]))), (0, 1)))(*o)
            for c, o in zip(cases, ops)]
    errors = []

    def worker(k):
        for _ in range(5):
            for i in range(len(cases)):
                j = (i + k) % len(cases)
                got = fns[j](*ops[j])
                for g, r in zip(got, refs[j]):
                    if not np.allclose(g, r, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(r)))):
                        errors.append(j)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


class _Tiny(nn.Module):
    """The zoo's layers (layers.ConvBN: the zoo's Conv, BatchNorm): strided, depthwise, 1x1 convolutions."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBN(8, 3, stride=2, act="relu")(x, train)
        x = ConvBN(8, 3, groups=8, act="relu")(x, train)
        x = ConvBN(16, 1)(x, train)
        return jnp.mean(x, axis=(1, 2))


@needs_kernels
def test_zoo_layers_through_the_fast_conv_hook(monkeypatch):
    """KDJAX_CONV=onednn (fast_conv.BACKEND) routes the zoo's convolutions; value and gradients match XLA's."""
    model = _Tiny()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 16, 16, 3)), jnp.float32)
    variables = jax.jit(model.init, static_argnames="train")(jax.random.PRNGKey(0), x, train=False)

    def loss(params):
        out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])
        return jnp.sum(out ** 2)

    ref = jax.jit(jax.value_and_grad(loss))(variables["params"])
    monkeypatch.setattr(fast_conv, "BACKEND", "onednn")
    lowered = jax.jit(jax.value_and_grad(loss)).lower(variables["params"])
    assert "kdjax_onednn_conv_bwd_weights" in lowered.as_text()
    ours = lowered.compile()(variables["params"])
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-4)
    # absolute tolerance on the scale of the whole gradient: BatchNorm's shift gradients here are sums that cancel to
    # ~1e-6, where float32 summation order alone moves them by ~1e-6
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree_util.tree_leaves(ref[1]))
    for a, b in zip(jax.tree_util.tree_leaves(ours[1]), jax.tree_util.tree_leaves(ref[1])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale + 1e-6)


@needs_kernels
def test_config_kernels_onednn_routes_a_distillation_model(monkeypatch):
    """config.kernels='onednn' (no KDJAX_CONV): resnet8x4 inside DistillationModel traces FFI convolutions, and its
    training-mode outputs and parameter gradients equal kernels='cpu_tuned' (the set it falls back to)."""
    from conftest import resnet_student_loss

    monkeypatch.delenv("KDJAX_CONV", raising=False)
    monkeypatch.setattr(fast_conv, "BACKEND", "xla")
    x = jnp.asarray(np.random.default_rng(5).standard_normal((4, 16, 16, 3)), jnp.float32)
    results = {}
    for choice in ("cpu_tuned", "onednn"):
        full_loss, params = resnet_student_loss(choice, x)

        def loss(p, full_loss=full_loss):  # outputs only, as before: the statistics are test_kernels.py's concern
            value, (out, _) = full_loss(p)
            return value, out

        lowered = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(params)
        assert ("kdjax_onednn_conv_bwd_weights" in lowered.as_text()) == (choice == "onednn")
        results[choice] = lowered.compile()(params)
    for a, b in zip(jax.tree_util.tree_leaves(results["onednn"]), jax.tree_util.tree_leaves(results["cpu_tuned"])):
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=2e-5)


def test_fallback_when_not_built(monkeypatch, capsys):
    """Without the library: available() is False with a reason, conv2d and the fast_conv hook compute with XLA,
    and the process says so once."""
    monkeypatch.setattr(onednn, "_lib", None)
    monkeypatch.setattr(onednn, "_error", f"{onednn.LIBRARY} is not built; {onednn.BUILD_HINT}")
    monkeypatch.setattr(onednn, "_warned", False)
    monkeypatch.setattr(fast_conv, "BACKEND", "onednn")
    assert not onednn.available() and "not built" in onednn.why_unavailable()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 4, 8)), jnp.float32)
    pad = ((1, 1), (1, 1))
    f = jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(onednn.conv2d(a, b, (2, 2), pad) ** 2), (0, 1)))
    hook = jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(fast_conv.flax_conv_general_dilated(
        a, b, (2, 2), pad, dimension_numbers=DN) ** 2), (0, 1)))
    ref = jax.value_and_grad(lambda a, b: jnp.sum(_reference(a, b, (2, 2), pad, 1, (1, 1)) ** 2), (0, 1))(x, w)
    for got in (f(x, w), hook(x, w)):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert "kdjax_onednn" not in f.lower(x, w).as_text()
    err = capsys.readouterr().err
    assert err.count("oneDNN convolutions unavailable") == 1, err


def test_fallback_in_a_fresh_process_without_the_library(tmp_path):
    """A process whose library path does not exist runs a conv with one warning line and exit status 0."""
    code = ("import kdjax.runtime.xla_flags, jax.numpy as jnp\n"
            "from kdjax.kernels import onednn\n"
            f"onednn.LIBRARY = {str(tmp_path / 'missing.so')!r}\n"
            "y = onednn.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), (1, 1), ((1, 1), (1, 1)))\n"
            "y = onednn.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)), (1, 1), ((1, 1), (1, 1)))\n"
            "assert float(y[0, 1, 1, 0]) == 18.0 and not onednn.available()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=onednn.HERE.rsplit("/kdjax/", 1)[0])
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "oneDNN" in l]
    assert len(lines) == 1 and "not built" in lines[0], proc.stderr


def test_build_without_a_compiler_warns_and_succeeds(tmp_path):
    script = onednn.HERE + "/build.py"
    env = {"PATH": "/usr/bin:/bin", "CXX": str(tmp_path / "no-such-compiler")}
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1 and "not built" in proc.stderr, proc.stderr
    strict = subprocess.run([sys.executable, script, "--strict"], capture_output=True, text=True, env=env)
    assert strict.returncode == 1


_ISA_SCRIPT = """
import kdjax.runtime.xla_flags, jax, jax.numpy as jnp, numpy as np
from jax import lax
from kdjax.kernels import onednn
cases = [((2, 9, 9, 8), (3, 3, 8, 16), (2, 2), ((1, 1), (1, 1)), 1), ((2, 8, 8, 8), (3, 3, 1, 8), (1, 1),
         ((1, 1), (1, 1)), 8), ((3, 7, 7, 8), (1, 1, 8, 12), (1, 1), ((0, 0), (0, 0)), 1)]
rng = np.random.default_rng(0)
for xs, ws, s, p, g in cases:
    x, w = jnp.asarray(rng.standard_normal(xs), jnp.float32), jnp.asarray(rng.standard_normal(ws), jnp.float32)
    f = lambda conv: jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(jnp.sin(conv(a, b))), (0, 1)))(x, w)
    ours = f(lambda a, b: onednn.conv2d(a, b, s, p, g))
    ref = f(lambda a, b: lax.conv_general_dilated(a, b, s, p, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                  feature_group_count=g))
    for o, r in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(r))))
print("OK", onednn.available(), onednn.info(), "|", onednn.why_unavailable())
"""


def _fresh(code, **env):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=onednn.HERE.rsplit(
        "/kdjax/", 1)[0], env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@needs_kernels
@pytest.mark.parametrize("isa", ["SSE41", "AVX2"])
def test_older_cpu_isa_still_exact(isa):
    """A CPU without AVX-512 (oneDNN dispatch capped with ONEDNN_MAX_CPU_ISA): the kernels run oneDNN's code for
    that ISA (or fall back to XLA's where it only has a reference implementation) and match lax."""
    proc = _fresh(_ISA_SCRIPT, ONEDNN_MAX_CPU_ISA=isa, DNNL_MAX_CPU_ISA=isa)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("OK True") and f"isa={isa.lower()}" in last, last


@needs_kernels
def test_cpu_without_a_fast_implementation_falls_back_once():
    """When oneDNN has only its reference implementation on this CPU (an ISA it does not JIT for), the kernels are
    unavailable with that reason, convolutions are XLA's (exact), and the process says so in one line."""
    code = ("from kdjax.kernels import onednn\n"
            "onednn._query = lambda *a, **k: (False, 'reference implementation only: ref:any')\n" + _ISA_SCRIPT
            + "assert not onednn.available() and 'no float32 convolution' in onednn.why_unavailable()\n")
    proc = _fresh(code)
    lines = [line for line in proc.stderr.splitlines() if "oneDNN" in line]
    assert proc.stdout.strip().splitlines()[-1].startswith("OK False"), proc.stdout
    assert len(lines) == 1 and "reference implementation only" in lines[0], proc.stderr


def test_conv_choice_from_env_or_config_value(monkeypatch, capsys):
    """KDJAX_CONV (fast_conv.BACKEND) is the default; a value passed in (a config's) wins; an unknown name is said
    once and means XLA's convolutions."""
    monkeypatch.setattr(fast_conv, "_warned_choice", False)
    monkeypatch.setattr(fast_conv, "BACKEND", "onednn")
    assert fast_conv.conv_choice() == "onednn" and fast_conv.conv_choice("xla") == "xla"
    monkeypatch.setattr(fast_conv, "BACKEND", "oneDNN")
    assert fast_conv.conv_choice() == "xla" and fast_conv.conv_choice() == "xla"
    err = capsys.readouterr().err
    assert err.count("unknown convolution choice 'oneDNN'") == 1, err


@needs_kernels
@pytest.mark.parametrize("stride,kernel,pad", [(1, 3, 1), (2, 3, 1), (2, 1, 0)])
def test_flops_of_a_step_count_the_onednn_convolutions(stride, kernel, pad):
    """XLA's cost analysis counts the FFI calls as zero; tools/mfu.step_flops adds them back from the HLO text, each
    call counted as XLA counts the forward convolution (multiply-adds that read the input, not the padding). At
    stride 1 the whole forward + backward step then has the FLOPs of the same step on XLA's convolutions (at stride 2
    XLA also counts the zeros of its dilated input gradient)."""
    from kdjax.runtime.compiled import cost
    from kdjax.tools import mfu

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 13, 12, 8)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 8, 16)), jnp.float32)
    strides, padding = (stride, stride), ((pad, pad), (pad, pad))

    def step(conv):
        return jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(conv(a, b) ** 2), (0, 1))).lower(x, w).compile()

    ours = step(lambda a, b: onednn.conv2d(a, b, strides, padding))
    assert "kdjax_onednn_conv_bwd_weights" in ours.as_text()
    forward = cost(jax.jit(lambda a, b: _reference(a, b, strides, padding, 1, (1, 1))).lower(x, w).compile())
    assert onednn.hlo_flops(ours.as_text()) == 3 * forward["flops"]  # forward, input gradient, weight gradient
    if stride == 1:
        ref = step(lambda a, b: _reference(a, b, strides, padding, 1, (1, 1)))
        assert mfu.step_flops(ours, 1) == pytest.approx(mfu.step_flops(ref, 1), rel=0.02)
