"""Numerics of the performance work (issue 7) and the benchmark entry point. No timing assertions.

- kdjax.kernels.conv: values and gradients (x and w) equal lax.conv_general_dilated's to ~1e-5 over
  shapes, strides, paddings and feature groups.
- the zoo's Conv (layers.py) computes what lax.conv_general_dilated computes.
- the zoo's BatchNorm (layers.py, hand-written training backward pass) equals flax.linen.BatchNorm: outputs,
  running statistics and gradients, float32 and bfloat16 inputs, odd channel counts.
- kdjax.runtime.host_memory.CompileThenRelease runs the same executable jit would, donation included.
- `python -m kdjax.tools.bench` runs end to end (2 steps, tiny config) and prints one valid JSON line.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

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
def test_zoo_conv_matches_lax():
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
        gx = jax.grad(lambda v, x: jnp.sum(module.apply(v, x) ** 2), (0, 1))(variables, x)
        gr = jax.grad(lambda kk, x: jnp.sum(_xla(x, kk, s, ((p, p), (p, p)), g) ** 2), (0, 1))(kernel, x)
        np.testing.assert_allclose(gx[0]["params"]["kernel"], gr[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gx[1], gr[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,dtype", [((4, 6, 6, 8), jnp.float32), ((3, 5, 7, 13), jnp.float32),
                                         ((8, 4, 4, 300), jnp.float32), ((4, 6, 6, 8), jnp.bfloat16)])
def test_zoo_batch_norm_matches_flax(shape, dtype):
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
