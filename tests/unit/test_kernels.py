"""Numerics of the performance work (issue 7) and the benchmark entry point. No timing assertions.

- kdjax.kernels.conv: values and gradients (x and w) equal lax.conv_general_dilated's to ~1e-5 over
  shapes, strides, paddings and feature groups.
- the zoo's Conv (layers.py) computes what lax.conv_general_dilated computes, under both kernel choices.
- the zoo's BatchNorm (layers.py) equals flax.linen.BatchNorm under both kernel choices ('cpu_tuned': hand-written
  training backward pass; 'xla': flax's formulation): outputs, running statistics and gradients, float32 and
  bfloat16 inputs, odd channel counts; and a whole ResNet trains the same under both.
- kdjax.kernels.select: cpu_tuned on XLA:CPU only, xla on GPU/TPU, a forced choice wins, env overrides per part.
- kdjax.runtime.host_memory.CompileThenRelease runs the same executable jit would, donation included.
- `python -m kdjax.tools.bench` runs end to end (2 steps, tiny config) and prints one valid JSON line.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from kdjax import kernels
from kdjax.kernels import conv as fast_conv

from conftest import REPO  # noqa: E402

# (batch, H, W, C_in, C_out, kernel, stride, padding ((lo, hi), (lo, hi)), groups)
CASES = [
    (2, 9, 9, 4, 6, 3, 1, ((1, 1), (1, 1)), 1),
    (2, 10, 10, 4, 6, 3, 2, ((1, 1), (1, 1)), 1),      # stride 2, even size
    (2, 11, 11, 4, 8, 3, 2, ((1, 1), (1, 1)), 1),      # stride 2, odd size
    (2, 11, 9, 6, 6, 3, 2, ((1, 1), (1, 1)), 3),       # groups, non-square
    (1, 8, 8, 4, 4, 3, 1, ((1, 1), (1, 1)), 4),        # depthwise
    (2, 12, 12, 3, 8, 5, 2, ((2, 2), (2, 2)), 1),      # 5x5
    (2, 7, 7, 4, 4, 3, 1, ((0, 0), (0, 0)), 1),        # VALID
    (2, 9, 9, 4, 4, 3, 2, ((0, 1), (0, 1)), 2),        # asymmetric padding, groups
    (1, 16, 16, 8, 8, 7, 2, ((3, 3), (3, 3)), 1),      # 7x7 stem-like
    (2, 8, 8, 4, 6, 1, 2, ((0, 0), (0, 0)), 1),        # 1x1 stride 2 (projection)
    (2, 6, 6, 4, 6, 1, 1, ((0, 0), (0, 0)), 1),        # 1x1
    (2, 9, 9, 4, 4, 3, 3, ((1, 1), (1, 1)), 1),        # stride 3
    (2, 8, 8, 4, 4, 3, 1, ((2, 0), (0, 2)), 1),        # lopsided padding
]


def _xla(x, w, stride, padding, groups):
    return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=groups)


@pytest.mark.parametrize("case", CASES, ids=[f"b{c[0]}_{c[1]}x{c[2]}_{c[3]}-{c[4]}_k{c[5]}_s{c[6]}_p{c[7]}_g{c[8]}"
                                             for c in CASES])
def test_custom_vjp_conv_matches_lax(case):
    n, h, w_, cin, cout, k, s, pad, g = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w_, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, cin // g, cout)) / np.sqrt(k * k * cin / g), jnp.float32)
    probe = jnp.asarray(rng.standard_normal(_xla(x, w, s, pad, g).shape), jnp.float32)

    def loss(conv):
        return lambda x, w: jnp.sum(conv(x, w) * probe)

    ours = fast_conv.conv2d_custom_vjp
    y0, y1 = _xla(x, w, s, pad, g), ours(x, w, (s, s), pad, g)
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    g0 = jax.grad(loss(lambda x, w: _xla(x, w, s, pad, g)), (0, 1))(x, w)
    g1 = jax.grad(loss(lambda x, w: ours(x, w, (s, s), pad, g)), (0, 1))(x, w)
    for name, a, b in (("dx", g1[0], g0[0]), ("dw", g1[1], g0[1])):
        scale = float(jnp.max(jnp.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-5, err_msg=name)
    # under jit too (what training runs)
    g2 = jax.jit(jax.grad(loss(lambda x, w: ours(x, w, (s, s), pad, g)), (0, 1)))(x, w)
    np.testing.assert_allclose(g2[1], g0[1], rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(g0[1]))))


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["xla", "cpu_tuned"])
def test_zoo_conv_matches_lax(choice):
    with kernels.use(choice):
        _zoo_conv_matches_lax(choice)


def _zoo_conv_matches_lax(choice):
    from kdjax.models.layers import conv

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 10, 10, 4)), jnp.float32)
    for k, s, g in ((3, 1, 1), (3, 2, 1), (1, 2, 1), (3, 1, 4), (5, 2, 2)):
        module = conv(8, k, s, g)
        variables = module.init(jax.random.PRNGKey(0), x)
        kernel = variables["params"]["kernel"]
        p = (k - 1) // 2
        ref = _xla(x, kernel, s, ((p, p), (p, p)), g)
        np.testing.assert_allclose(module.apply(variables, x), ref, rtol=1e-5, atol=1e-5)
        traced = str(jax.make_jaxpr(lambda v: module.apply(v, x))(variables))
        assert ("custom_vjp_call" in traced) == (choice == "cpu_tuned")
        gx = jax.grad(lambda v, x: jnp.sum(module.apply(v, x) ** 2), (0, 1))(variables, x)
        gr = jax.grad(lambda kk, x: jnp.sum(_xla(x, kk, s, ((p, p), (p, p)), g) ** 2), (0, 1))(kernel, x)
        np.testing.assert_allclose(gx[0]["params"]["kernel"], gr[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gx[1], gr[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("choice", ["xla", "cpu_tuned"])
@pytest.mark.parametrize("shape,dtype", [((4, 6, 6, 8), jnp.float32), ((3, 5, 7, 13), jnp.float32),
                                         ((8, 4, 4, 300), jnp.float32), ((4, 6, 6, 8), jnp.bfloat16)])
def test_zoo_batch_norm_matches_flax(shape, dtype, choice):
    with kernels.use(choice):
        _batch_norm_matches_flax(shape, dtype, choice)


def _batch_norm_matches_flax(shape, dtype, choice):
    import flax.linen as nn

    from kdjax.models.layers import batch_norm

    rng = np.random.default_rng(2)
    x = jnp.asarray(3.0 + 2.0 * rng.standard_normal(shape), dtype)
    probe = jnp.asarray(rng.standard_normal(shape), jnp.float32)       # a random linear functional of y
    ours, ref = batch_norm(train=True), nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    variables = ref.init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(ours.init(jax.random.PRNGKey(0), x)) == jax.tree.structure(variables)
    c = shape[-1]
    variables = {"params": {"scale": jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32),
                            "bias": jnp.asarray(rng.standard_normal(c), jnp.float32)},
                 "batch_stats": {"mean": jnp.asarray(rng.standard_normal(c), jnp.float32),
                                 "var": jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32)}}

    def run(module, params, x):
        y, upd = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"])
        return jnp.sum(y.astype(jnp.float32) * probe), (y, upd)

    tol = dict(rtol=2e-2, atol=2e-2) if dtype == jnp.bfloat16 else dict(rtol=2e-5, atol=2e-5)
    traced = str(jax.make_jaxpr(lambda p: run(ours, p, x)[0])(variables["params"]))
    assert ("custom_vjp_call" in traced) == (choice == "cpu_tuned")  # the chosen implementation is the one traced
    (_, (y1, u1)), g1 = jax.value_and_grad(lambda p, x: run(ours, p, x), (0, 1), has_aux=True)(variables["params"], x)
    (_, (y2, u2)), g2 = jax.value_and_grad(lambda p, x: run(ref, p, x), (0, 1), has_aux=True)(variables["params"], x)
    assert y1.dtype == y2.dtype
    np.testing.assert_allclose(np.asarray(y1, np.float32), np.asarray(y2, np.float32), **tol)
    for k in ("mean", "var"):
        np.testing.assert_allclose(u1["batch_stats"][k], u2["batch_stats"][k], rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        scale = float(np.max(np.abs(np.asarray(b, np.float32)))) + 1e-6
        np.testing.assert_allclose(np.asarray(a, np.float32) / scale, np.asarray(b, np.float32) / scale, **tol)
    # inference mode: the running statistics, flax's formula
    y_inf = batch_norm(train=False).apply(variables, x)
    np.testing.assert_allclose(np.asarray(y_inf, np.float32),
                               np.asarray(nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5)
                                          .apply(variables, x), np.float32), **tol)


def test_kernels_are_chosen_per_backend_unless_forced(monkeypatch):
    monkeypatch.delenv("KDJAX_FAST_BN", raising=False)
    monkeypatch.delenv("KDJAX_FAST_CONV", raising=False)
    assert kernels.select("auto", "cpu").name == "cpu_tuned"
    for backend in ("gpu", "cuda", "rocm", "tpu"):
        k = kernels.select("auto", backend)
        assert (k.name, k.batch_norm, k.conv) == ("xla", "autodiff", "xla"), backend
    assert kernels.select("xla", "cpu").name == "xla" and kernels.select("cpu_tuned", "gpu").name == "cpu_tuned"
    assert kernels.current() == kernels.select("auto", jax.default_backend())  # no context: auto, this backend
    with kernels.use("xla"):
        assert kernels.current().conv == "xla"
    monkeypatch.setenv("KDJAX_FAST_CONV", "0")  # ablation override of one part
    assert (kernels.select("cpu_tuned").batch_norm, kernels.select("cpu_tuned").conv) == ("custom_vjp", "xla")
    monkeypatch.delenv("KDJAX_FAST_CONV")
    k = kernels.select("onednn", "cpu")
    assert (k.name, k.batch_norm, k.conv) == ("onednn", "custom_vjp", "onednn")
    monkeypatch.setenv("KDJAX_CONV", "onednn")  # the benchmarks' override of the convolution part
    assert kernels.select("auto", "cpu").conv == "onednn" and kernels.select("xla", "gpu").conv == "onednn"
    with pytest.raises(ValueError, match="kernels"):
        kernels.select("oneDNN")


def test_a_resnet_trains_the_same_with_either_kernels():
    """resnet8x4 through DistillationModel: training-mode outputs, updated running statistics and every parameter
    gradient agree between kernels='xla' and kernels='cpu_tuned' (strided convs and BatchNorms included)."""
    from conftest import resnet_student_loss

    x = jnp.asarray(np.random.default_rng(3).standard_normal((4, 12, 12, 3)), jnp.float32)
    results = {}
    for choice in ("xla", "cpu_tuned"):
        loss, params = resnet_student_loss(choice, x)
        traced = str(jax.make_jaxpr(lambda p: loss(p)[0])(params))
        assert ("custom_vjp_call" in traced) == (choice == "cpu_tuned")
        (_, (out, new_stats)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        results[choice] = (out, new_stats, grads)
    for a, b in zip(jax.tree.leaves(results["cpu_tuned"]), jax.tree.leaves(results["xla"])):
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-5)


_SPLIT_BN = r"""
import json, sys
sys.path.insert(0, {repo!r})
import flax.linen as nn, jax, jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
from kdjax import kernels
from kdjax.models.layers import batch_norm
mesh = jax.make_mesh((8,), ("d",), axis_types=(AxisType.Auto,))
out = {{}}
for shape in [(32, 14, 14, 8), (16, 7, 7, 64), (128, 14, 14, 8)]:
    for name, module, choice in (("zoo", batch_norm(train=True), "cpu_tuned"),
                                 ("zoo_xla", batch_norm(train=True), "xla"),
                                 ("flax", nn.BatchNorm(use_running_average=False, momentum=0.9), "xla")):
        v = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(shape)))
        v = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=NamedSharding(mesh, P())), v)
        x = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(mesh, P("d")))
        def f(v, x):
            def loss(p, x):
                y, _ = module.apply({{"params": p, "batch_stats": v["batch_stats"]}}, x, mutable=["batch_stats"])
                return jnp.sum(y * y)
            return jax.grad(loss, (0, 1))(v["params"], x)
        with kernels.use(choice):
            lines = jax.jit(f).lower(v, x).compile().as_text().splitlines()
        out[f"{{name}}{{list(shape)}}"] = [sum(f" {{op}}(" in ln or f" {{op}}-start(" in ln for ln in lines)
                                          for op in ("all-gather", "all-reduce")]
print(json.dumps(out))
"""


def test_zoo_batch_norm_all_reduces_its_statistics_over_a_split_batch():
    """Issue 15's reproduction: BatchNorm forward + backward on a batch split over 8 simulated devices. The former
    column-sum view (rows straddling samples) compiled to 4 all-gathers of the activation and 0-2 all-reduces on
    these shapes; now, under either kernel choice, like flax.linen.BatchNorm: no all-gather, 2 all-reduces of
    per-channel sums."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SPLIT_BN.format(repo=REPO)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    for key, (gathers, reduces) in counts.items():
        assert gathers == 0, (key, counts)
        assert reduces == counts["flax" + key[key.index("["):]][1] > 0, (key, counts)


def test_compile_then_release_is_the_jitted_step():
    from kdjax.runtime.host_memory import compile_then_release

    def step(state, x):
        return state + x, jnp.sum(state * x)

    jitted = jax.jit(step, donate_argnums=(0,))
    wrapped = compile_then_release(jax.jit(step, donate_argnums=(0,)))
    s0, s1 = jnp.arange(4.0), jnp.arange(4.0)
    for i in range(3):
        s0, m0 = jitted(s0, jnp.full(4, float(i)))
        s1, m1 = wrapped(s1, jnp.full(4, float(i)))
        np.testing.assert_array_equal(s0, s1)
        assert float(m0) == float(m1)
    assert wrapped.compiled is not None
    # another signature still works (falls back to jit)
    out, _ = wrapped(jnp.arange(6.0), jnp.ones(6))
    np.testing.assert_array_equal(out, jnp.arange(6.0) + 1)


@pytest.mark.slow
def test_bench_runs_end_to_end_and_prints_json():
    cmd = [sys.executable, "-m", "kdjax.tools.bench", "--config=configs/dkd.py", "--batch=8", "--steps=2", "--warmup=0"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, out.stdout
    result = json.loads(lines[0])
    for key in ("images_per_s", "compile_s", "peak_rss_mb", "device", "batch", "config"):
        assert key in result, key
    assert result["batch"] == 8 and result["images_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert result["config"] == "configs/dkd.py"
    assert np.isfinite(result["loss"])
    # utilisation: XLA's FLOPs of the step, FLOP/s achieved at the median step time, against a measured CPU peak
    assert result["flops_per_step"] > 0 and result["flops_per_image"] * 8 == pytest.approx(result["flops_per_step"])
    achieved = result["flops_per_step"] / (result["step_ms_median"] / 1000) / 1e12
    assert result["achieved_tflops"] == pytest.approx(achieved, rel=0.02, abs=1e-4)
    assert "matmul" in result["peak_source"] and result["mfu"] == pytest.approx(
        result["achieved_tflops"] / result["peak_tflops"], rel=0.05, abs=1e-3)
