"""Checks of the loss family beyond the golden files: float64 numpy re-derivations on other shapes and
seeds, extreme logits, bf16 inputs, label masks, CombinedLoss bookkeeping and config validation."""

import math
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import kdjax.losses as L
from kdjax.losses import afd, dist, distance, dkd, dml, feature_ops, gt_ce, kd, mgd, rkd, soft_ce, wsl
from kdjax.errors import ConfigError

RNG = np.random.RandomState(1234)


@pytest.fixture(autouse=True)
def _reseed(request):
    """Each test draws the same data alone or in the full run."""
    RNG.seed(zlib.crc32(request.node.name.encode()))


def logits(n, c, scale=3.0):
    return (RNG.randn(n, c) * scale).astype(np.float32)


def nchw(*shape):
    return RNG.randn(*shape).astype(np.float32)


def to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def close(actual, expected, rtol=1e-5, atol=1e-6, err_msg=""):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol, err_msg=err_msg)


# --- float64 references, written from LOSSES.md --------------------------------------------------

def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_softmax(x):
    return np.exp(np_log_softmax(x))


def np_ce(x, y, eps=None, reduction="mean"):
    lp, c = np_log_softmax(x), x.shape[1]
    q = np.eye(c)[y]
    if eps is not None:
        q = (1 - eps) * q + eps / c
    per = -(q * lp).sum(1)
    return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]


def np_kd(s, t, temp):
    pt = np_softmax(t / temp)
    return temp ** 2 * (pt * (np_log_softmax(t / temp) - np_log_softmax(s / temp))).sum() / s.shape[0]


def np_dml(s, t, act="softmax", sum_c=False, eps=1e-12):
    f = {"softmax": np_softmax, "sigmoid": lambda z: 1 / (1 + np.exp(-np.asarray(z, np.float64))),
         None: lambda z: np.asarray(z, np.float64)}[act]
    p, q, c = f(s), f(t), s.shape[-1]
    elem = (q * np.log((q + eps) / (p + eps)) * c + p * np.log((p + eps) / (q + eps)) * c) / 2
    return elem.sum(-1).mean() if sum_c else elem.mean()


def np_dkd(s, t, y, temp, alpha, beta):
    n, c = s.shape
    g = np.eye(c)[y]
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    bs = np.stack([(ps * g).sum(1), (ps * (1 - g)).sum(1)], 1)
    bt = np.stack([(pt * g).sum(1), (pt * (1 - g)).sum(1)], 1)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum() * temp ** 2 / n
    zt, zs = t / temp - 1000 * g, s / temp - 1000 * g
    nckd = (np_softmax(zt) * (np_log_softmax(zt) - np_log_softmax(zs))).sum() * temp ** 2 / n
    return alpha * tckd + beta * nckd


def np_dist(s, t, beta, gamma):
    def rho(a, b):
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)
    ys, yt = np_softmax(s), np_softmax(t)
    return beta * (1 - rho(ys, yt).mean()) + gamma * (1 - rho(ys.T, yt.T).mean())


def np_wsl(s, t, y, temp, s_weight=None):
    """s_weight: the student logits the (detached) weight is computed from; defaults to s."""
    g = np.eye(s.shape[1])[y]
    s_weight = s if s_weight is None else s_weight
    ce_s, ce_t = -(g * np_log_softmax(s_weight)).sum(1), -(g * np_log_softmax(t)).sum(1)
    w = 1 - np.exp(-np.maximum(ce_s / (ce_t + 1e-7), 0))
    kd = -(np_softmax(t / temp) * np_log_softmax(s / temp)).sum(1)
    return (kd * w).mean() * temp ** 2


def np_smooth_l1(z):
    return np.where(np.abs(z) < 1, 0.5 * z * z, np.abs(z) - 0.5)


def np_pool_nchw(x, k):
    n, c, h, w = x.shape
    out = np.zeros((n, c, k, k))
    for i in range(k):
        for j in range(k):
            h0, h1 = (i * h) // k, math.ceil((i + 1) * h / k)
            w0, w1 = (j * w) // k, math.ceil((j + 1) * w / k)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean((2, 3))
    return out


def np_embed(x, size):
    x = np.asarray(x, np.float64)
    return (np_pool_nchw(x, size) if size else x).reshape(x.shape[0], -1)


def np_rkd_angle(s, t, size=None):
    def angles(e):
        d = e[None] - e[:, None]
        d = d / np.maximum(np.linalg.norm(d, axis=2, keepdims=True), 1e-12)
        return np.einsum("ijd,ikd->ijk", d, d)
    return np_smooth_l1(angles(np_embed(s, size)) - angles(np_embed(t, size))).mean()


def np_rkd_distance(s, t, size=None):
    def dist(e):
        d = np.sqrt(np.maximum(((e[:, None] - e[None]) ** 2).sum(-1), 1e-12))
        return d / (d.mean() + 1e-12)
    return np_smooth_l1(dist(np_embed(s, size)) - dist(np_embed(t, size))).mean()


def np_conv_same(x, k, b):
    """NHWC conv, stride 1, 'same' padding; k is HWIO."""
    kh, kw = k.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, w = x.shape[1:3]
    out = sum(np.einsum("nhwi,io->nhwo", xp[:, dy:dy + h, dx:dx + w], k[dy, dx])
              for dy in range(kh) for dx in range(kw))
    return out + b


def np_afd_attention(p_t, p_s, bkey, query, vs, vt, n_t):
    logit = (np.einsum("bstq,btq->bts", bkey, query) + p_t @ p_s.T) / np.sqrt(bkey.shape[-1])
    att = np.exp(logit - logit.max(2, keepdims=True))
    att /= att.sum(2, keepdims=True)
    per = [(((vs[n] - v[:, None]) ** 2).mean(2) * att[:, i]).sum(1).mean() for i, (n, v) in enumerate(zip(n_t, vt))]
    return sum(per), np.array(per)


def fd_grad(f, x, h=1e-6):
    """Central finite differences of a float64 numpy function."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# --- numpy re-derivations ---------------------------------------------------------------------------

@pytest.mark.parametrize("eps,reduction", [(None, "mean"), (0.2, "sum"), (0.05, "none"), (1.5, "mean")])
def test_cross_entropy_matches_numpy(eps, reduction):
    x, y = logits(6, 7), RNG.randint(0, 7, 6)
    ref_eps = eps if eps is not None and 0 < eps < 1 else None  # outside (0, 1): no smoothing
    close(gt_ce.cross_entropy(x, y, eps, reduction), np_ce(x, y, ref_eps, reduction))
    close(gt_ce.cross_entropy(x, y[:, None], eps, reduction), np_ce(x, y, ref_eps, reduction))  # [N, 1] labels


def test_logit_pair_losses_match_numpy_with_gradients():
    s, t, y = logits(5, 6), logits(5, 6), RNG.randint(0, 6, 5)
    cases = [
        (lambda a, b: soft_ce.soft_ce_loss(a, b), lambda a: -(np_softmax(t) * np_log_softmax(a)).sum(1).mean()),
        (lambda a, b: kd.kl_div_loss(a, b, 3.0), lambda a: np_kd(a, t, 3.0)),
        (lambda a, b: dml.dml_loss(a, b), lambda a: np_dml(a, t)),
        (lambda a, b: dml.dml_loss(a, b, "sigmoid", True), lambda a: np_dml(a, t, "sigmoid", True)),
        (lambda a, b: dkd.dkd_loss(a, b, y, 2.0, 0.7, 3.0), lambda a: np_dkd(a, t, y, 2.0, 0.7, 3.0)),
        (lambda a, b: dist.dist_loss(a, b, 1.5, 0.5), lambda a: np_dist(a, t, 1.5, 0.5)),
        (lambda a, b: wsl.wsl_loss(a, b, y, 3.0), lambda a: np_wsl(a, t, y, 3.0, s_weight=s)),  # w is detached
    ]
    value_grads = jax.jit(lambda a, b: [jax.value_and_grad(f)(a, b) for f, _ in cases])(s, t)  # one compile
    for i, ((_, np_fn), (value, grad)) in enumerate(zip(cases, value_grads)):
        close(value, np_fn(s), rtol=2e-5, err_msg=f"case {i}")
        close(grad, fd_grad(np_fn, s), rtol=1e-3, atol=1e-5, err_msg=f"case {i}")


def test_dml_probability_inputs_and_dkd_teacher_argmax():
    p = np_softmax(logits(4, 5)).astype(np.float32)
    p[0, 1] = 0.0
    q = np_softmax(logits(4, 5)).astype(np.float32)
    close(dml.dml_loss(p, q, act=None), np_dml(p, q, None), rtol=2e-5)
    s, t = logits(4, 5), logits(4, 5)
    close(dkd.dkd_loss(s, t, None, 1.0, 1.0, 1.0), np_dkd(s, t, t.argmax(1), 1.0, 1.0, 1.0), rtol=2e-5)
    close(wsl.wsl_loss(s, t, None, 2.0), np_wsl(s, t, t.argmax(1), 2.0), rtol=2e-5)


def test_teacher_side_gets_no_gradient_in_paddleclas_semantics():
    s, t, y = logits(3, 4), logits(3, 4), np.array([0, 1, 2])
    fns = (soft_ce.soft_ce_loss, lambda a, b: kd.kl_div_loss(a, b, 2.0), lambda a, b: dkd.dkd_loss(a, b, y),
           lambda a, b: kd.kl_div_loss(a, b, 2.0, teacher_grad=True))
    *detached, g = jax.jit(lambda a, b: [jax.grad(f, argnums=1)(a, b) for f in fns])(s, t)
    assert not any(np.any(np.asarray(d)) for d in detached)
    close(g, fd_grad(lambda b: np_kd(s, b, 2.0), t), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("mode", ["l1", "l2", "smooth_l1"])
@pytest.mark.parametrize("act", [None, "softmax", "sigmoid"])
def test_distance_matches_numpy_nchw(mode, act):
    x, y = nchw(3, 4, 5, 2) * 2, nchw(3, 4, 5, 2) * 2
    f = {None: lambda z: z, "softmax": np_softmax,  # the reference's softmax(axis=-1) on NCHW: over W
         "sigmoid": lambda z: 1 / (1 + np.exp(-z))}[act]
    z = f(np.float64(x)) - f(np.float64(y))
    ref = {"l1": np.abs(z), "l2": z * z, "smooth_l1": np_smooth_l1(z)}[mode].mean()
    close(distance.distance_loss(to_nhwc(x), to_nhwc(y), mode, act), ref)


@pytest.mark.parametrize("size", [None, 1, 2, 3])
def test_rkd_matches_numpy_with_nchw_flattening(size):
    s, t = nchw(5, 3, 5, 7), nchw(5, 3, 5, 7)
    close(rkd.rkd_angle_loss(to_nhwc(s), to_nhwc(t), size), np_rkd_angle(s, t, size), rtol=1e-4)
    close(rkd.rkd_distance_loss(to_nhwc(s), to_nhwc(t), size), np_rkd_distance(s, t, size), rtol=1e-4)


def test_rkd_duplicate_rows_stay_finite():
    e, t = RNG.randn(5, 9).astype(np.float32), RNG.randn(5, 9).astype(np.float32)
    e[1] = e[0]
    for fn, ref in ((rkd.rkd_angle_loss, np_rkd_angle), (rkd.rkd_distance_loss, np_rkd_distance)):
        value, grad = jax.jit(jax.value_and_grad(fn), static_argnums=2)(e, t, None)
        close(value, ref(e, t), rtol=1e-4)
        assert np.all(np.isfinite(np.asarray(grad)))


def test_adaptive_pool_uneven_bins():
    x = nchw(2, 3, 5, 7)
    for k in (2, 3, 4):
        close(feature_ops.adaptive_avg_pool(to_nhwc(x), k), to_nhwc(np_pool_nchw(np.float64(x), k)))


@pytest.mark.slow
def test_mgd_matches_numpy_with_injected_params_and_mask():
    s, t = RNG.randn(2, 4, 4, 3).astype(np.float32), RNG.randn(2, 4, 4, 5).astype(np.float32)
    u = RNG.rand(2, 1, 1, 5).astype(np.float32)

    @jax.jit
    def init_and_run(rng):  # one compilation
        params = mgd.mgd_init(rng, s, t)
        return params, mgd.mgd_loss(params, s, t, alpha_mgd=1.5, lambda_mgd=0.4, mask_uniform=u)

    params, value = init_and_run(jax.random.key(3))
    params = jax.tree.map(np.asarray, params)
    assert set(params) == {"align", "generation_0", "generation_2"}
    x = np_conv_same(np.float64(s), params["align"]["kernel"], params["align"]["bias"])
    x = x * (u >= 0.4)
    x = np.maximum(np_conv_same(x, params["generation_0"]["kernel"], params["generation_0"]["bias"]), 0)
    x = np_conv_same(x, params["generation_2"]["kernel"], params["generation_2"]["bias"])
    close(value, 1.5 * ((x - t) ** 2).mean())
    same = jax.eval_shape(mgd.mgd_init, jax.random.key(3), t, t)
    assert "align" not in same  # the align conv exists only when channel counts differ
    assert not np.any(np.asarray(mgd.mgd_mask(u, 0.0)) == 0) and not np.any(np.asarray(mgd.mgd_mask(u, 1.0)))


@pytest.mark.slow
def test_afd_attention_and_heads_match_numpy():
    b, q = 4, 6
    s_feats = [RNG.randn(b, 4, 4, 3).astype(np.float32), RNG.randn(b, 2, 2, 5).astype(np.float32)]
    t_feats = [RNG.randn(b, 4, 4, 2).astype(np.float32), RNG.randn(b, 4, 4, 2).astype(np.float32),
               RNG.randn(b, 3, 3, 4).astype(np.float32)]
    n_t, uniq = afd.unique_shapes([(f.shape[3], f.shape[1], f.shape[2]) for f in t_feats])
    assert n_t == [0, 0, 1] and uniq == [(2, 4, 4), (4, 3, 3)]

    @jax.jit
    def init_and_run(rng):  # one compilation for init, loss and gradient
        params = afd.afd_init(rng, s_feats, t_feats, q)
        return params, jax.value_and_grad(lambda p: afd.afd_loss(p, s_feats, t_feats, q), has_aux=True)(params)

    params, ((total, per), grads) = init_and_run(jax.random.key(0))
    params = jax.tree.map(np.asarray, params)

    def lin_bn(x, p, relu):
        y = x @ p["linear"]["kernel"] + p["linear"]["bias"]
        y = (y - y.mean(0)) / np.sqrt(y.var(0) + 1e-5) * p["bn"]["scale"] + p["bn"]["bias"]
        return np.maximum(y, 0) if relu else y

    def normalize(v, axis):
        return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), 1e-12)

    f64 = [np.float64(f) for f in s_feats], [np.float64(f) for f in t_feats]
    key = np.stack([lin_bn(f.mean((1, 2)), params["student"][f"key_{j}"], True) for j, f in enumerate(f64[0])], 1)
    bkey = lin_bn(key.reshape(b * 2, q), params["student"]["bilinear"], False).reshape(b, 2, 3, q)
    query = np.stack([lin_bn(f.mean((1, 2)), params["teacher"][f"query_{i}"], False) for i, f in enumerate(f64[1])], 1)
    vt = [normalize((f ** 2).mean(-1).reshape(b, -1), 1) for f in f64[1]]
    vs = [normalize(np.stack([np_pool_nchw((f ** 2).mean(-1)[:, None], h)[:, 0].reshape(b, -1) for f in f64[0]], 1), 2)
          for _, h, _ in uniq]
    ref_total, ref_per = np_afd_attention(params["p_t"], params["p_s"], bkey, query, vs, vt, n_t)
    close(total, ref_total, rtol=1e-4)
    close(per, ref_per, rtol=1e-4)
    assert np.any(np.asarray(grads["p_t"])) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


# --- numerics: C = 2, saturated logits, bf16 ----------------------------------------------------------

LOGIT_LOSSES = {
    "soft_ce": lambda s, t, y: soft_ce.soft_ce_loss(s, t),
    "kd": lambda s, t, y: kd.kl_div_loss(s, t, 1.0),
    "kd_teacher_grad": lambda s, t, y: kd.kl_div_loss(s, t, 4.0, teacher_grad=True),
    "dml": lambda s, t, y: dml.dml_loss(s, t),
    "dml_sigmoid": lambda s, t, y: dml.dml_loss(s, t, "sigmoid"),
    "dkd": lambda s, t, y: dkd.dkd_loss(s, t, y, 1.0, 1.0, 8.0),
    "dkd_T4": lambda s, t, y: dkd.dkd_loss(s, t, y, 4.0, 1.0, 8.0, teacher_grad=True),
    "dist": lambda s, t, y: dist.dist_loss(s, t),
    "wsl": lambda s, t, y: wsl.wsl_loss(s, t, y, 2.0),
    "gt_ce": lambda s, t, y: gt_ce.cross_entropy(s, y, 0.1),
}


@jax.jit
def _all_logit_losses(s, t, y):
    return {name: jax.value_and_grad(fn, argnums=(0, 1))(s, t, y) for name, fn in LOGIT_LOSSES.items()}


def _finite_value_and_grads(fn, s, t, y):
    value, grads = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(s, t, y)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    return float(value)


@pytest.mark.parametrize("scale", [30.0, 80.0])
def test_saturated_logits_stay_finite(scale):
    s = np.clip(logits(6, 10, scale), -scale, scale)
    s[0] = -scale
    s[0, 3] = scale
    y = np.array([3, 1, 2, 3, 4, 5])
    t = np.full((6, 10), -scale, np.float32)
    t[np.arange(6), y] = scale  # saturated one-hot teachers
    for name, (value, grads) in _all_logit_losses(s, t, y).items():
        assert np.isfinite(float(value)) and all(np.all(np.isfinite(np.asarray(g))) for g in grads), name


def test_dkd_with_two_classes():
    s, t, y = logits(5, 2, 5.0), logits(5, 2, 5.0), np.array([0, 1, 1, 0, 1])
    value = _finite_value_and_grads(lambda a, b, c: dkd.dkd_loss(a, b, c, 4.0, 1.0, 8.0), s, t, y)
    close(value, np_dkd(s, t, y, 4.0, 1.0, 8.0), rtol=1e-5)
    sat = np.array([[30.0, -30.0], [-30.0, 30.0]], np.float32)
    _finite_value_and_grads(lambda a, b, c: dkd.dkd_loss(a, b, c), sat, sat[::-1], np.array([0, 0]))


def test_bf16_inputs_give_float32_losses():
    s, t, y = logits(6, 10), logits(6, 10), RNG.randint(0, 10, 6)  # shapes of the saturation test: one compile
    sb, tb = jnp.asarray(s, jnp.bfloat16), jnp.asarray(t, jnp.bfloat16)
    low = _all_logit_losses(sb, tb, y)
    upcast = _all_logit_losses(np.asarray(sb, np.float32), np.asarray(tb, np.float32), y)
    full = _all_logit_losses(s, t, y)
    for name in LOGIT_LOSSES:
        value, grads = low[name]
        assert value.dtype == jnp.float32 and grads[0].dtype == jnp.bfloat16, name
        close(value, float(upcast[name][0]), rtol=1e-6, err_msg=name)  # float32 math after the cast
        close(value, float(full[name][0]), rtol=5e-2, atol=1e-2, err_msg=name)
    fb = jax.ShapeDtypeStruct((3, 4, 4, 5), jnp.bfloat16)
    for fn in (distance.distance_loss, lambda x, y: rkd.rkd_angle_loss(x, y, 2), lambda x, y: rkd.rkd_distance_loss(x, y)):
        assert jax.eval_shape(fn, fb, fb).dtype == jnp.float32


# --- label_mask -------------------------------------------------------------------------------------

def test_label_mask_semantics():
    s, t = logits(6, 5), logits(6, 5)
    y = np.array([1, 4, -1, 0, -1, 2])  # unlabeled rows carry -1
    mask = y >= 0
    close(gt_ce.cross_entropy(s, y, label_mask=mask), np_ce(s[mask], y[mask]), rtol=2e-6)
    close(gt_ce.cross_entropy(s, y, 0.1, "sum", label_mask=mask), np_ce(s[mask], y[mask], 0.1, "sum"), rtol=2e-6)
    target = np.where(mask, y, t.argmax(1))
    combined = L.build_losses([dict(type="gt_ce"), dict(type="dkd"), dict(type="wsl")])
    outputs = {"Student": {"logits": s}, "Teacher": {"logits": t}}
    _, terms = combined({}, outputs, y, label_mask=mask.astype(np.float32))
    close(terms["gt_ce/Student"], np_ce(s[mask], y[mask]), rtol=2e-6)
    close(terms["dkd/Student-Teacher"], np_dkd(s, t, target, 1.0, 1.0, 1.0), rtol=2e-5)
    close(terms["wsl/Student-Teacher"], np_wsl(s, t, target, 2.0), rtol=2e-5)
    y_all = np.abs(y)
    plain = combined({}, outputs, y_all)[1]
    ones = combined({}, outputs, y_all, label_mask=np.ones(6, bool))[1]
    for k in plain:
        assert float(plain[k]) == float(ones[k]), k  # an all-ones mask changes nothing


# --- CombinedLoss -------------------------------------------------------------------------------------

def _outputs(n=4, c=6):
    """Model outputs as kdjax sees them: logits, NHWC maps `feat` / `tfeat`, embeddings `emb`."""
    return {"Student": {"logits": logits(n, c), "feat": nchw(n, 3, 3, 4), "emb": RNG.randn(n, 7).astype(np.float32)},
            "Teacher": {"logits": logits(n, c), "feat": nchw(n, 3, 3, 4), "tfeat": nchw(n, 3, 3, 6),
                        "emb": RNG.randn(n, 7).astype(np.float32)}}


def test_combined_weights_terms_and_names():
    out, y = _outputs(), np.array([0, 1, 2, 3])
    cfg = [dict(type="gt_ce", weight=0.5, models=["Student", "Teacher"]),
           dict(type="kd", weight=0.9, temperature=4),
           dict(type="distance", weight=2.0, key="feat", params=dict(mode="smooth_l1")),
           dict(type="distance", weight=1.0, key="emb"),
           dict(type="rkd", weight=3.0, key="emb", params=dict(angle_weight=2.0))]
    loss = L.build_losses(ml_collections.ConfigDict({"losses": cfg}).losses)
    assert loss.term_names == ("gt_ce/Student", "gt_ce/Teacher", "kd/Student-Teacher", "distance/Student-Teacher",
                               "distance/Student-Teacher#3", "rkd/Student-Teacher/angle",
                               "rkd/Student-Teacher/distance")
    total, terms = jax.jit(lambda o, lab: loss({}, o, lab))(out, y)
    s, t = out["Student"], out["Teacher"]
    expected = {"gt_ce/Student": 0.5 * np_ce(s["logits"], y), "gt_ce/Teacher": 0.5 * np_ce(t["logits"], y),
                "kd/Student-Teacher": 0.9 * np_kd(s["logits"], t["logits"], 4.0),
                "distance/Student-Teacher": 2.0 * np_smooth_l1(np.float64(s["feat"]) - t["feat"]).mean(),
                "distance/Student-Teacher#3": ((np.float64(s["emb"]) - t["emb"]) ** 2).mean(),
                "rkd/Student-Teacher/angle": 6.0 * np_rkd_angle(s["emb"], t["emb"]),
                "rkd/Student-Teacher/distance": 3.0 * np_rkd_distance(s["emb"], t["emb"])}
    for k, v in expected.items():
        assert terms[k].dtype == jnp.float32 and terms[k].shape == ()
        close(terms[k], v, rtol=1e-4)
    close(total, sum(float(v) for v in terms.values()), rtol=1e-6)


def test_single_entry_weight_is_applied():
    out = _outputs()
    one = L.build_losses([dict(type="dml")])({}, out, None)[0]
    three = L.build_losses([dict(type="dml", weight=3.0)])({}, out, None)[0]
    close(three, 3 * float(one), rtol=1e-6)


def test_ssld_stops_teacher_gradient_and_dml_does_not():
    out = _outputs()
    for kind, teacher_moves in (("ssld", False), ("dml", True)):
        loss = L.build_losses([dict(type=kind)])
        g = jax.grad(lambda o: loss({}, o, None)[0])(out)
        assert np.any(np.asarray(g["Student"]["logits"]))
        assert bool(np.any(np.asarray(g["Teacher"]["logits"]))) == teacher_moves


def test_dkd_warmup_epoch_rng_and_label_requirements():
    out, y = _outputs(), np.array([0, 1, 2, 3])
    base = float(L.build_losses([dict(type="dkd", params=dict(temperature=4.0, beta=8.0))])({}, out, y)[0])
    warm = L.build_losses([dict(type="dkd", params=dict(temperature=4.0, beta=8.0, warmup_epochs=20))])
    for epoch, factor in ((1, 1 / 20), (10, 0.5), (35, 1.0)):
        close(warm({}, out, y, epoch=jnp.float32(epoch))[0], base * factor, rtol=1e-6)
    with pytest.raises(ValueError, match="epoch"):
        warm({}, out, y)
    with pytest.raises(ValueError, match="labels"):
        L.build_losses([dict(type="gt_ce")])({}, out, None)
    no_labels = L.build_losses([dict(type="dkd")])({}, out, None)[0]  # teacher argmax
    close(no_labels, np_dkd(out["Student"]["logits"], out["Teacher"]["logits"],
                            out["Teacher"]["logits"].argmax(1), 1.0, 1.0, 1.0), rtol=2e-5)


@pytest.mark.slow
def test_learnable_losses_init_and_train():
    out = _outputs()
    loss = L.build_losses([
        dict(type="mgd", s_key="feat", t_key="tfeat", params=dict(student_channels=4, teacher_channels=6)),
        dict(type="afd", weight=50.0, s_keys=["feat"], t_keys=["feat", "tfeat"], params=dict(qk_dim=8))])
    abstract, key = jax.eval_shape(lambda: out), jax.random.key(0)
    shapes = jax.eval_shape(lambda k: loss.init(k, abstract), key)  # tracing only: no compilation
    assert set(shapes) == {"mgd_Student_Teacher", "afd_Student_Teacher"}
    assert shapes["afd_Student_Teacher"]["p_t"].shape == (2, 8)
    assert loss.param_key(0, ("Student", "Teacher")) == "mgd_Student_Teacher"
    total, terms = jax.eval_shape(lambda p: loss(p, out, None, rng=key), shapes)
    assert total.shape == () and set(terms) == {"mgd/Student-Teacher", "afd/Student-Teacher"}
    with pytest.raises(ValueError, match="rng"):
        loss(shapes, out, None)
    mgd = L.build_losses([dict(type="mgd", s_key="feat", t_key="tfeat",
                               params=dict(student_channels=4, teacher_channels=6))])
    params = jax.jit(lambda k: mgd.init(k, abstract))(key)
    step = jax.jit(jax.value_and_grad(lambda p, k: mgd(p, out, None, rng=k)[0]))
    v1, g = step(params, jax.random.key(1))
    v2, _ = step(params, jax.random.key(2))
    assert np.isfinite(float(v1)) and float(v1) != float(v2)  # a fresh MGD mask per rng
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
    assert np.any(np.asarray(g["mgd_Student_Teacher"]["generation_2"]["kernel"]))


# --- validation -------------------------------------------------------------------------------------

MODELS = ["Student", "Teacher"]
CAPTURED = {"Student": {"blocks5", "avg_pool"}, "Teacher": {"blocks5"}}
FROZEN = {"Student": False, "Teacher": True}


@pytest.mark.parametrize("entry,field,words", [
    (dict(type="kdd"), "losses[0].type", ["'kdd'", "dkd", "gt_ce"]),
    (dict(type="kd", pairs=[["Student", "Teacher2"]]), "losses[0].pairs", ["Teacher2", "Student", "Teacher"]),
    (dict(type="gt_ce", models=["Pupil"]), "losses[0].models", ["Pupil"]),
    (dict(type="distance", key="blocks9"), "losses[0].key", ["blocks9", "avg_pool", "blocks5"]),
    (dict(type="distance", s_key="avg_pool", t_key="avg_pool"), "losses[0].t_key", ["Teacher", "avg_pool"]),
    (dict(type="kd", weight="high"), "losses[0].weight", ["number"]),
    (dict(type="kd", params=dict(temperature=0)), "losses[0].params.temperature", ["> 0"]),
    (dict(type="dkd", temperature=-1.0), "losses[0].params.temperature", ["> 0"]),
    (dict(type="mgd", key="blocks5", params=dict(student_channels=8)), "losses[0].params.teacher_channels", ["needs"]),
    (dict(type="kd", params=dict(temprature=4)), "losses[0].params.temprature", ["temperature"]),
    (dict(type="distance", params=dict(mode="l3")), "losses[0].params.mode", ["l1", "l2", "smooth_l1"]),
    (dict(type="gt_ce", pairs=[["Student", "Teacher"]]), "losses[0].pairs", ["models="]),
    (dict(type="gt_ce", models=["Teacher"]), "losses[0].models", ["frozen"]),
    (dict(type="afd", params=dict(qk_dim=8)), "losses[0].s_keys", ["s_keys", "t_keys"]),
])
def test_validate_losses_errors_name_the_field(entry, field, words):
    with pytest.raises(ConfigError) as err:
        L.validate_losses([entry], MODELS, CAPTURED, FROZEN)
    assert err.value.field == field, str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_validate_accepts_good_configs_and_checks_ssld_teacher():
    good = [dict(type="gt_ce", models=["Student"]), dict(type="ssld"), dict(type="dkd", weight=1),
            dict(type="distance", pairs=["Student", "Teacher"], key="blocks5", params=dict(act="softmax")),
            ml_collections.ConfigDict(dict(type="rkd", key="blocks5", params=dict(target_size=[1, 1])))]
    L.validate_losses(good, MODELS, CAPTURED, FROZEN)
    with pytest.raises(ConfigError, match="frozen"):
        L.validate_losses([dict(type="ssld")], MODELS, CAPTURED, {"Student": False, "Teacher": False})
    with pytest.raises(ConfigError) as err:
        L.validate_losses([dict(type="kd"), dict(type="nope")], MODELS, CAPTURED, FROZEN)
    assert err.value.field == "losses[1].type"


def test_shape_check_reports_unpairable_features():
    out = {"Student": {"logits": jnp.zeros((4, 10)), "f": jnp.zeros((4, 8, 8, 16))},
           "Teacher": {"logits": jnp.zeros((4, 10)), "f": jnp.zeros((4, 8, 8, 32))}}
    abstract = jax.eval_shape(lambda: out)
    L.build_losses([dict(type="kd"), dict(type="rkd", key="f", target_size=1)]).shape_check(abstract)
    with pytest.raises(ConfigError) as err:
        L.build_losses([dict(type="kd"), dict(type="distance", key="f")]).shape_check(abstract)
    assert err.value.field == "losses[1].key" and "[4, 8, 8, 16]" in str(err.value)
    mgd = dict(type="mgd", key="f", params=dict(student_channels=16, teacher_channels=16))
    with pytest.raises(ConfigError, match="teacher_channels"):
        L.build_losses([mgd]).shape_check(abstract)
    with pytest.raises(ConfigError, match="returned no 'g'"):
        L.build_losses([dict(type="distance", key="g")]).shape_check(abstract)
