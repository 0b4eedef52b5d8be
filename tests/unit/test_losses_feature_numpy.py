"""The feature/relation losses (reviewkd, pkt, sp, nst, vid, ofd, ickd) against float64 numpy transcriptions of their
formulas (LOSSES.md §8-14, the papers), on shapes, seeds and hyper-parameters other than the golden files', with their
learnable modules' weights shared; plus what each loss refuses and whether it is separable over a batch."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import kdjax.losses as L
from kdjax.errors import ConfigError
from kdjax.losses import ickd, nst, ofd, pkt, reviewkd, sp, vid
from kdjax.losses.registry import is_separable


def _rand(seed, *shape, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * np.float32(scale)


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _close(actual, expected, rtol=2e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# ---- numpy building blocks (NHWC, float64) ------------------------------------------------------------------------

def np_pool(x, oh, ow):
    """torch adaptive_avg_pool2d bins [floor(i·H/k), ceil((i+1)·H/k)) on NHWC."""
    n, h, w, c = x.shape
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -(-(i + 1) * h // oh)
            w0, w1 = (j * w) // ow, -(-(j + 1) * w // ow)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def np_normalize(x, axis):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def np_bn_train(x, scale, bias):
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return (x - mean) / np.sqrt(var + 1e-5) * scale + bias


def np_conv(x, k):
    """Stride-1 convolution of an NHWC map with an HWIO kernel, zero padding (k − 1)/2."""
    kh, kw, _, o = k.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, o))
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nhwi,io->nhwo", xp[:, dy:dy + h, dx:dx + w], k[dy, dx])
    return out


def np_nearest(x, size):
    """torch F.interpolate(mode='nearest'): source floor(i · (float32) in/out)."""
    def idx(n):
        return np.minimum(np.floor(np.arange(size, dtype=np.float32) * (np.float32(n) / np.float32(size))), n - 1)
    return x[:, idx(x.shape[1]).astype(int)][:, :, idx(x.shape[2]).astype(int)]


# ---- the losses ---------------------------------------------------------------------------------------------------

def np_hcl(fs, ft):
    total = 0.0
    for s, t in zip(fs, ft):
        h = s.shape[1]
        loss, cnt, tot = np.mean((s - t) ** 2), 1.0, 1.0
        for level in (4, 2, 1):
            if level < h:
                cnt /= 2
                loss += cnt * np.mean((np_pool(s, level, level) - np_pool(t, level, level)) ** 2)
                tot += cnt
        total += loss / tot
    return total


def np_review_path(params, s_feats, t_feats):
    """ReviewKD's ABFs, deepest first (mdistiller ReviewKD.forward_train / ABF.forward)."""
    maps = [f.reshape(f.shape[0], 1, 1, -1) if f.ndim == 2 else f for f in s_feats]
    t_maps = [f.reshape(f.shape[0], 1, 1, -1) if f.ndim == 2 else f for f in t_feats]
    outs, residual = [None] * len(maps), None
    for i in reversed(range(len(maps))):
        p = params[f"abf{i}"]
        x = np_bn_train(np_conv(maps[i], p["conv1"]["kernel"]), p["bn1"]["scale"], p["bn1"]["bias"])
        if i < len(maps) - 1:
            y = np_nearest(residual, x.shape[1])
            z = np_conv(np.concatenate([x, y], -1), p["att_conv"]["kernel"]) + p["att_conv"]["bias"]
            z = 1 / (1 + np.exp(-z))
            x = x * z[..., :1] + y * z[..., 1:]
        if x.shape[2] != t_maps[i].shape[2]:
            x = np_nearest(x, t_maps[i].shape[1])
        outs[i] = np_bn_train(np_conv(x, p["conv2"]["kernel"]), p["bn2"]["scale"], p["bn2"]["bias"])
        residual = x
    return np_hcl(outs, t_maps)


def np_pkt(s, t, eps=1e-7):
    def probs(f):
        f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
        m = (f @ f.T + 1) / 2
        return m / m.sum(axis=1, keepdims=True)
    p, q = probs(s), probs(t)
    return np.mean(q * np.log((q + eps) / (p + eps)))


def np_sp(fs, ft):
    total = 0.0
    for s, t in zip(fs, ft):
        n = s.shape[0]
        gs = np_normalize(s.transpose(0, 3, 1, 2).reshape(n, -1) @ s.transpose(0, 3, 1, 2).reshape(n, -1).T, 1)
        gt = np_normalize(t.transpose(0, 3, 1, 2).reshape(n, -1) @ t.transpose(0, 3, 1, 2).reshape(n, -1).T, 1)
        total += np.sum((gt - gs) ** 2) / n ** 2
    return total


def np_match_height(s, t):
    hs, ht = s.shape[1], t.shape[1]
    if hs > ht:
        s = np_pool(s, ht, ht)
    elif hs < ht:
        t = np_pool(t, hs, hs)
    return s, t


def np_nst(fs, ft):
    total = 0.0
    for s, t in zip(fs, ft):
        s, t = np_match_height(s, t)
        a = np_normalize(s.transpose(0, 3, 1, 2).reshape(s.shape[0], s.shape[3], -1), 2)  # [N, C, HW]
        b = np_normalize(t.transpose(0, 3, 1, 2).reshape(t.shape[0], t.shape[3], -1), 2)

        def poly(x, y):  # [N, C_y, C_x]: (Σ_k x[n, j, k] y[n, i, k])²
            return np.einsum("njk,nik->nij", x, y) ** 2
        total += poly(b, b).mean() + poly(a, a).mean() - 2 * poly(a, b).mean()
    return total


def np_vid(params, fs, ft, eps, log_scales):
    total = 0.0
    for i, (s, t) in enumerate(zip(fs, ft)):
        s, t = np_match_height(s, t)
        r = params[f"pair{i}"]["regressor"]
        mu = np_conv(np.maximum(np_conv(np.maximum(np_conv(s, r["conv0"]["kernel"]), 0), r["conv2"]["kernel"]), 0),
                     r["conv4"]["kernel"])
        var = np.log(1 + np.exp(log_scales[i])) + eps
        total += np.mean(0.5 * ((mu - t) ** 2 / var + np.log(var)))
    return total


def np_ofd_margin(gamma, beta):
    out = []
    for g, b in zip(gamma.astype(np.float64), beta.astype(np.float64)):
        s = abs(g)
        cdf = norm.cdf(-b / s)
        out.append(-s * math.exp(-(b / s) ** 2 / 2) / math.sqrt(2 * math.pi) / cdf + b if cdf > 0.001 else -3 * s)
    return np.asarray(out, np.float32).astype(np.float64)


def np_ofd(params, fs, ft, margins):
    k, total = len(fs), 0.0
    for i, (s, t) in enumerate(zip(fs, ft)):
        p = params[f"connector{i}"]
        x = np_bn_train(np_conv(s, p["conv"]["kernel"]), p["bn"]["scale"], p["bn"]["bias"])
        t = np_pool(t, x.shape[1], x.shape[2])
        m = margins[i]
        d = ((x - m) ** 2 * ((x > m) & (t <= m)) + (x - t) ** 2 * ((x > t) & (t > m) & (t <= 0))
             + (x - t) ** 2 * (t > 0))
        total += np.abs(d).mean(axis=0).sum() / 2 ** (k - 1 - i)
    return total


def np_ickd(params, fs, ft):
    total = 0.0
    for s, t in zip(fs, ft):
        x = np_bn_train(np_conv(s, params["conv"]["kernel"]), params["bn"]["scale"], params["bn"]["bias"])
        n, c = x.shape[0], x.shape[3]

        def gram(f):
            f = f.transpose(0, 3, 1, 2).reshape(n, f.shape[3], -1)
            return np_normalize(np.einsum("nik,njk->nij", f, f), 2)
        total += np.sum((gram(x) - gram(t)) ** 2) / (c * n)
    return total


# ---- tests: values ------------------------------------------------------------------------------------------------

def _random_params(init, *args, seed=0):
    """Parameters shaped as `init(rng, *args)` makes them, every value random (BatchNorm affine included), so nothing
    sits at its init; shapes from jax.eval_shape (an RNG init costs more to compile than these tests run)."""
    shapes = jax.eval_shape(lambda: init(jax.random.PRNGKey(0), *args))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.normal(scale=0.5, size=a.shape).astype(np.float32), shapes)


@pytest.mark.parametrize("s_shapes,t_shapes", [
    ([(6, 8, 8, 4), (6, 4, 4, 8), (6, 2, 2, 8), (6, 8)], [(6, 8, 8, 6), (6, 4, 4, 12), (6, 2, 2, 16), (6, 16)]),
    ([(5, 7, 7, 3), (5, 3, 3, 5), (5, 6)], [(5, 14, 14, 4), (5, 7, 7, 4), (5, 4)]),  # nearest 3→7, 7→14, 1→3
])
def test_reviewkd_review_path_matches_numpy(s_shapes, t_shapes):
    s = [_rand(10 + i, *sh) for i, sh in enumerate(s_shapes)]
    t = [_rand(20 + i, *sh) for i, sh in enumerate(t_shapes)]
    params = _random_params(reviewkd.reviewkd_init, s, t, seed=1)
    assert "att_conv" not in params[f"abf{len(s) - 1}"] and all("att_conv" in params[f"abf{i}"]
                                                                  for i in range(len(s) - 1))
    mid = min(512, s_shapes[-1][-1])
    assert all(params[f"abf{i}"]["conv1"]["kernel"].shape[-1] == mid for i in range(len(s)))
    _close(jax.jit(reviewkd.reviewkd_loss)(params, s, t), np_review_path(_f64(params), _f64(s), _f64(t)), rtol=1e-4)


def test_reviewkd_warmup_scales_by_epoch():
    s, t = [_rand(1, 4, 4, 4, 3), _rand(2, 4, 3)], [_rand(3, 4, 4, 4, 5), _rand(4, 4, 5)]
    cfg = dict(type="reviewkd", s_keys=["a", "p"], t_keys=["a", "p"], warmup_epochs=20.0)
    losses = L.build_losses([cfg])
    outputs = {"Student": {"a": s[0], "p": s[1]}, "Teacher": {"a": t[0], "p": t[1]}}
    params = _random_params(lambda rng: losses.init(rng, outputs))
    full = float(jax.jit(reviewkd.reviewkd_loss)(params["reviewkd_Student_Teacher"], s, t))
    call = jax.jit(lambda p, o, e: losses(p, o, None, epoch=e)[0])
    for epoch, factor in ((1, 1 / 20), (10, 0.5), (35, 1.0)):
        total = call(params, outputs, jnp.float32(epoch))
        assert float(total) == pytest.approx(full * factor, rel=1e-6)


@pytest.mark.parametrize("seed,n,ds,dt,eps", [(0, 9, 7, 13, 1e-7), (1, 3, 20, 4, 1e-3), (2, 16, 5, 5, 1e-7)])
def test_pkt_matches_numpy(seed, n, ds, dt, eps):
    s, t = _rand(seed, n, ds), _rand(seed + 100, n, dt, scale=3.0)
    _close(jax.jit(pkt.pkt_loss, static_argnums=2)(s, t, eps), np_pkt(_f64(s), _f64(t), eps))


def test_sp_matches_numpy_over_stages():
    s = [_rand(0, 7, 5, 3, 6), _rand(1, 7, 2, 2, 9)]
    t = [_rand(2, 7, 4, 4, 10), _rand(3, 7, 1, 1, 30)]
    _close(jax.jit(sp.sp_loss)(s, t), np_sp(_f64(s), _f64(t)))


@pytest.mark.parametrize("s_shape,t_shape", [((3, 9, 9, 5), (3, 4, 4, 7)), ((4, 3, 3, 6), (4, 7, 7, 2)),
                                             ((2, 5, 5, 3), (2, 5, 5, 3))])
def test_nst_matches_numpy(s_shape, t_shape):
    s, t = [_rand(5, *s_shape)], [_rand(6, *t_shape, scale=0.5)]
    _close(jax.jit(nst.nst_loss)(s, t), np_nst(_f64(s), _f64(t)))


@pytest.mark.parametrize("learn_variance", [True, False])
def test_vid_matches_numpy(learn_variance):
    s = [_rand(7, 3, 8, 8, 4), _rand(8, 3, 4, 4, 6)]
    t = [_rand(9, 3, 4, 4, 5), _rand(10, 3, 4, 4, 9)]
    init_var, eps = 2.5, 1e-4
    params = _random_params(vid.vid_init, s, t, init_var, eps, learn_variance, seed=4)
    assert ("log_scale" in params["pair0"]) == learn_variance
    log_scales = [np.full((x.shape[-1],), np.log(np.exp(init_var - eps) - 1)) for x in t]
    if learn_variance:  # trained variances: use other values than the init
        for i, x in enumerate(t):
            params[f"pair{i}"]["log_scale"] = _rand(30 + i, x.shape[-1])
            log_scales[i] = np.asarray(params[f"pair{i}"]["log_scale"], np.float64)
    else:  # σ² stays init_pred_var, mdistiller's untrained log_scale
        assert np.log(1 + np.exp(log_scales[0][0])) + eps == pytest.approx(init_var, rel=1e-12)
    _close(jax.jit(vid.vid_loss, static_argnums=(3, 4))(params, s, t, init_var, eps), np_vid(_f64(params), _f64(s), _f64(t), eps, log_scales))


@pytest.mark.parametrize("kernel", [1, 3])
def test_ofd_matches_numpy(kernel):
    s = [_rand(11, 5, 6, 6, 4), _rand(12, 5, 3, 3, 8)]
    t = [_rand(13, 5, 12, 12, 6), _rand(14, 5, 3, 3, 10)]
    rng = np.random.default_rng(15)
    gammas = [rng.normal(size=x.shape[-1]).astype(np.float32) for x in t]
    betas = [rng.normal(scale=2.0, size=x.shape[-1]).astype(np.float32) for x in t]  # both margin formulas
    margins = [ofd.ofd_margin(g, b) for g, b in zip(gammas, betas)]
    for g, b, m in zip(gammas, betas, margins):
        np.testing.assert_array_equal(m, np_ofd_margin(g, b).astype(np.float32))
    assert any(np.any(norm.cdf(-b / np.abs(g)) <= 0.001) for g, b in zip(gammas, betas))
    params = _random_params(ofd.ofd_init, s, t, kernel, seed=2)
    assert params["connector0"]["conv"]["kernel"].shape == (kernel, kernel, 4, 6)
    _close(jax.jit(ofd.ofd_loss, static_argnums=4)(params, s, t, margins, kernel), np_ofd(_f64(params), _f64(s), _f64(t), margins), rtol=1e-4)


def test_ickd_matches_numpy_with_one_shared_embedding():
    s = [_rand(16, 4, 5, 5, 6), _rand(17, 4, 3, 3, 6)]
    t = [_rand(18, 4, 5, 5, 9), _rand(19, 4, 2, 2, 9)]  # H·W may differ: the Gram matrices sum over it
    params = _random_params(ickd.ickd_init, s[0], t[0], seed=3)
    _close(jax.jit(ickd.ickd_loss)(params, s, t), np_ickd(_f64(params), _f64(s), _f64(t)), rtol=1e-4)


def test_ofd_margins_come_from_the_frozen_teachers_batchnorms():
    cfg = dict(type="ofd", s_keys=["f"], t_keys=["f"], teacher_bns=["stage/BatchNorm_0"])
    losses = L.build_losses([cfg])
    gamma, beta = np.array([1.0, -0.5, 2.0, 0.1], np.float32), np.array([0.3, -1.0, 1.0, -4.0], np.float32)
    teacher = {"params": {"stage": {"BatchNorm_0": {"scale": gamma, "bias": beta}}}}
    state = losses.init_state(jax.random.PRNGKey(0), 0, {"Teacher": teacher})
    np.testing.assert_array_equal(state["ofd_Student_Teacher"]["margin0"], np_ofd_margin(gamma, beta).astype(np.float32))
    outputs = {"Student": {"f": _rand(1, 2, 3, 3, 2)}, "Teacher": {"f": _rand(2, 2, 3, 3, 4)}}
    params = losses.init(jax.random.PRNGKey(1), outputs)
    _, _, new_state = losses.apply(params, state, outputs, None)
    np.testing.assert_array_equal(new_state["ofd_Student_Teacher"]["margin0"], state["ofd_Student_Teacher"]["margin0"])
    with pytest.raises(ConfigError, match=r"losses\[0\]\.params\.teacher_bns.*no BatchNorm at 'stage/bn'"):
        L.build_losses([dict(cfg, teacher_bns=["stage/bn"])]).check_teachers({"Teacher": teacher})
    with pytest.raises(ConfigError, match=r"teacher_bns.*4 channels but t_keys\[0\] 'f' has 6"):
        losses.check_teachers({"Teacher": teacher}, {"Teacher": {"f": jnp.zeros((2, 3, 3, 6))}})


# ---- tests: refusals and separability ----------------------------------------------------------------------------

def _shape_error(cfg, s, t):
    losses = L.build_losses([cfg])
    outputs = {"Student": {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in s.items()},
               "Teacher": {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in t.items()}}
    with pytest.raises(ConfigError) as e:
        losses.shape_check(outputs)
    return e.value


@pytest.mark.parametrize("cfg,s,t,field,words", [
    (dict(type="pkt", key="f"), {"f": (4, 3, 3, 8)}, {"f": (4, 8)}, "losses[0].key", "pooled [N, D]"),
    (dict(type="nst", s_keys=["f"], t_keys=["f"]), {"f": (4, 8, 8, 3)}, {"f": (4, 4, 2, 3)}, "losses[0].s_keys",
     "different H·W"),
    (dict(type="vid", s_keys=["f"], t_keys=["f"]), {"f": (4, 4, 4, 3)}, {"f": (4, 4, 6, 3)}, "losses[0].s_keys",
     "different H·W"),
    (dict(type="reviewkd", s_keys=["f"], t_keys=["f"]), {"f": (4, 4, 6, 3)}, {"f": (4, 4, 4, 3)},
     "losses[0].s_keys", "not square"),
    (dict(type="ickd", s_keys=["f", "g"], t_keys=["f", "g"]), {"f": (4, 4, 4, 3), "g": (4, 2, 2, 5)},
     {"f": (4, 4, 4, 8), "g": (4, 2, 2, 8)}, "losses[0].s_keys", "one embedding serves every pair"),
])
def test_unpairable_features_are_refused_by_field(cfg, s, t, field, words):
    err = _shape_error(cfg, s, t)
    assert err.field == field and words in err.message


@pytest.mark.parametrize("cfg,field", [
    (dict(type="pkt", eps=0.0), "losses[0].params.eps"),
    (dict(type="vid", s_keys=["f"], t_keys=["f"], init_pred_var=1e-6), "losses[0].params.init_pred_var"),
    (dict(type="vid", s_keys=["f"], t_keys=["f", "g"]), "losses[0].t_keys"),
    (dict(type="ofd", s_keys=["f"], t_keys=["f"]), "losses[0].params.teacher_bns"),
    (dict(type="ofd", s_keys=["f"], t_keys=["f"], teacher_bns=["a", "b"]), "losses[0].t_keys"),
    (dict(type="ofd", s_keys=["f"], t_keys=["f"], teacher_bns=["a"], kernel_size=2), "losses[0].params.kernel_size"),
    (dict(type="reviewkd", s_keys=["f"], t_keys=["f"], warmup_epochs=-1), "losses[0].params.warmup_epochs"),
    (dict(type="sp", s_keys=["f", "g"], t_keys=["f"]), "losses[0].t_keys"),
])
def test_bad_hyper_parameters_are_refused_by_field(cfg, field):
    with pytest.raises(ConfigError) as e:
        L.build_losses([cfg])
    assert e.value.field == field


def test_ofd_needs_a_frozen_teacher():
    with pytest.raises(ConfigError, match="frozen"):
        L.validate_losses([dict(type="ofd", s_keys=["f"], t_keys=["f"], teacher_bns=["a"])], ["Student", "Teacher"],
                          {"Student": {"f"}, "Teacher": {"f"}}, {"Student": False, "Teacher": False})


def _halves_equal(fn, s, t):
    """fn on the batch equals the mean of fn on its two halves (what gradient accumulation assumes)."""
    n = s[0].shape[0] // 2
    fn = jax.jit(fn)
    whole = float(fn(s, t))
    halves = [float(fn([x[a:b] for x in s], [x[a:b] for x in t])) for a, b in ((0, n), (n, 2 * n))]
    return whole == pytest.approx(np.mean(halves), rel=1e-5)


def test_declared_separability_matches_the_maths():
    s, t = [_rand(40, 8, 4, 4, 3)], [_rand(41, 8, 4, 4, 5)]
    vid_params = _random_params(vid.vid_init, s, t)
    ickd_params = _random_params(ickd.ickd_init, s[0], t[0])
    ofd_params = _random_params(ofd.ofd_init, s, t)
    margins = [np.full((5,), -0.5, np.float32)]
    rk_params = _random_params(reviewkd.reviewkd_init, s, t)
    fns = {"nst": nst.nst_loss, "vid": lambda a, b: vid.vid_loss(vid_params, a, b),
           "pkt": lambda a, b: pkt.pkt_loss(a[0].reshape(8, -1), b[0].reshape(8, -1)), "sp": sp.sp_loss,
           "ickd": lambda a, b: ickd.ickd_loss(ickd_params, a, b),
           "ofd": lambda a, b: ofd.ofd_loss(ofd_params, a, b, margins),
           "reviewkd": lambda a, b: reviewkd.reviewkd_loss(rk_params, a, b)}
    for name, fn in fns.items():
        cfg = dict(type=name, key="f") if name == "pkt" else dict(type=name, s_keys=["f"], t_keys=["f"])
        if name == "ofd":
            cfg["teacher_bns"] = ["bn"]
        declared = is_separable(L.build_losses([cfg]).entries[0])
        assert declared == _halves_equal(fn, s, t), name
    assert [n for n in fns if is_separable(L.build_losses(
        [dict(type=n, key="f") if n == "pkt" else dict(type=n, s_keys=["f"], t_keys=["f"],
                                                       **({"teacher_bns": ["bn"]} if n == "ofd" else {}))]
    ).entries[0])] == ["nst", "vid"]
