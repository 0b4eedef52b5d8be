"""MLKD (and + logit standardization), NKD, USKD and CTKD against float64 numpy evaluations of their papers' / reference
repositories' formulas (written here from LOSSES.md and the papers, not by calling kdjax), at shapes, seeds and
hyper-parameters the golden cases do not cover. Gradients: central differences of the numpy loss, with the
reference's detached quantities (masks, soft labels, Zipf labels) held at their unperturbed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kdjax.losses as L
from kdjax.losses import ctkd, mlkd, nkd, uskd


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def close(actual, expected, rtol=1e-4):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(np.abs(expected).max(), 1e-12)
    assert np.all(np.abs(actual - expected) <= rtol * (np.abs(expected) + 0.05 * scale)), \
        np.max(np.abs(actual - expected) / scale)


# --- MLKD ---------------------------------------------------------------------------------------------------

def np_kd(s, t, tau, stand):
    if stand:
        z = lambda v: (v - v.mean(-1, keepdims=True)) / (1e-7 + v.std(-1, ddof=1, keepdims=True))  # noqa: E731
        s, t = z(s), z(t)
    q = softmax(t / tau)
    return tau * tau * np.mean(np.sum(q * (log_softmax(t / tau) - log_softmax(s / tau)), -1))


def np_mlkd(s_w, s_s, t_w, t_s, y, T, w_ce, w_kd, stand, masks=None):
    p = softmax(t_w)
    conf, cls = p.max(1), p.sum(0)
    f_inst, f_cls = masks or (np.mean(conf <= np.percentile(conf, 50)), np.mean(cls <= np.percentile(cls, 50)))
    taus = (T, 3.0, 5.0, 2.0, 6.0)
    n, c = s_w.shape
    ce = -np.mean(log_softmax(s_w)[np.arange(n), y]) - np.mean(log_softmax(s_s)[np.arange(n), y])

    def cc(s, t, tau):
        P, Q = softmax(s / tau), softmax(t / tau)
        return np.sum((Q.T @ Q - P.T @ P) ** 2) / c

    def bc(s, t, tau):
        P, Q = softmax(s / tau), softmax(t / tau)
        return np.sum((Q @ Q.T - P @ P.T) ** 2) / n

    kd = (w_kd * f_inst * sum(np_kd(s_w, t_w, tau, stand) for tau in taus)
          + w_kd * sum(np_kd(a, b, tau, stand) for a, b, tau in
                       ((s_s, t_s, T), (s_s, t_s, 3.0), (s_s, t_s, 5.0), (s_w, t_w, 2.0), (s_w, t_w, 6.0))))
    return (w_ce * ce, kd, w_kd * f_cls * sum(cc(s_w, t_w, tau) for tau in taus),
            w_kd * f_inst * sum(bc(s_w, t_w, tau) for tau in taus)), (f_inst, f_cls)


@pytest.mark.parametrize("n,c,T,w_ce,w_kd,stand,seed", [(6, 9, 3.0, 0.3, 1.5, False, 1), (9, 4, 1.5, 0.1, 9.0, True, 2),
                                                        (3, 12, 4.0, 1.0, 0.5, True, 3)])
def test_mlkd_against_numpy(n, c, T, w_ce, w_kd, stand, seed):
    r = np.random.default_rng(seed)
    s_w, s_s, t_w, t_s = (r.normal(0, 3, (n, c)) for _ in range(4))
    y = r.integers(0, c, n)
    (ref, masks) = np_mlkd(s_w, s_s, t_w, t_s, y, T, w_ce, w_kd, stand)
    combined = L.build_losses([dict(type="mlkd", temperature=T, ce_weight=w_ce, kd_weight=w_kd, logit_stand=stand)])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731

    def total(a, b):
        outputs = {"Student": {"logits": a, "strong/logits": b},
                   "Teacher": {"logits": f32(t_w), "strong/logits": f32(t_s)}}
        return combined({}, outputs, jnp.asarray(y))

    (value, terms), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(f32(s_w), f32(s_s))
    close([terms[f"mlkd/Student-Teacher/{p}"] for p in ("ce", "kd", "cc", "bc")], ref, 1e-5)
    close(value, sum(ref), 1e-5)
    for k, x in enumerate((s_w, s_s)):
        def f(v, k=k):
            views = [s_w, s_s]
            views[k] = v
            return sum(np_mlkd(*views, t_w, t_s, y, T, w_ce, w_kd, stand, masks)[0])
        close(grads[k], numeric_grad(f, x))


def test_mlkd_masks_are_fractions_at_the_median_with_ties():
    """Saturated teacher rows tie at confidence 1.0 (float32): `≤ median` counts every tie."""
    t = np.full((5, 4), -30.0, np.float32)
    t[np.arange(5), [0, 1, 2, 3, 0]] = 30.0
    t[4] = [0.5, 0.1, 0.0, -0.2]  # one unsure row
    f_inst, f_cls = mlkd.confidence_fractions(jnp.asarray(t))
    p = softmax(t.astype(np.float32))
    assert float(f_inst) == 1.0  # median 1.0, every row ≤ it
    assert float(f_cls) == np.mean(p.sum(0) <= np.percentile(p.sum(0), 50))


# --- NKD ------------------------------------------------------------------------------------------------------

def np_nkd(s, t, y, temp, gamma, p_t=None):
    n, c = s.shape
    rows = np.arange(n)
    p_t = softmax(t)[rows, y] if p_t is None else p_t  # detached
    loss_t = -np.mean(p_t * log_softmax(s)[rows, y])
    keep = np.ones((n, c), bool)
    keep[rows, y] = False
    s_n, t_n = s[keep].reshape(n, c - 1) / temp, t[keep].reshape(n, c - 1) / temp
    return loss_t - gamma * temp ** 2 * np.mean(np.sum(softmax(t_n) * log_softmax(s_n), -1))


@pytest.mark.parametrize("n,c,temp,gamma,seed", [(7, 6, 2.0, 1.0, 4), (3, 30, 4.0, 0.5, 5), (10, 3, 1.0, 3.5, 6)])
def test_nkd_against_numpy(n, c, temp, gamma, seed):
    r = np.random.default_rng(seed)
    s, t = r.normal(0, 4, (n, c)), r.normal(0, 4, (n, c))
    y = r.integers(0, c, n)
    combined = L.build_losses([dict(type="nkd", temperature=temp, gamma=gamma)])
    value, grad = jax.value_and_grad(lambda a: combined(
        {}, {"Student": {"logits": a}, "Teacher": {"logits": jnp.asarray(t, jnp.float32)}}, jnp.asarray(y))[0])(
        jnp.asarray(s, jnp.float32))
    close(value, np_nkd(s, t, y, temp, gamma), 1e-5)
    close(grad, numeric_grad(lambda v: np_nkd(v, t, y, temp, gamma), s))
    # mixup / cutmix scores: the label is their argmax
    scores = np.eye(c)[y] * 0.7 + np.eye(c)[np.roll(y, 1)] * 0.3
    soft = combined({}, {"Student": {"logits": jnp.asarray(s, jnp.float32)},
                         "Teacher": {"logits": jnp.asarray(t, jnp.float32)}}, None,
                    soft_labels=jnp.asarray(scores, jnp.float32))[0]
    close(soft, np_nkd(s, t, y, temp, gamma), 1e-5)


# --- USKD -----------------------------------------------------------------------------------------------------

def np_uskd(s, feat, w, b, y, alpha, beta, mu, scores=None, detached=None):
    """The USKDLoss formulas; `detached` = (a, z') from the unperturbed point (the reference detaches both)."""
    n, c = s.shape
    rows = np.arange(n)[:, None]
    if scores is None:
        cols, vals = y[:, None], np.ones((n, 1))
        q = np.eye(c)[y] * 0.9 + 0.1 / c
    else:
        cols = np.argsort(-scores, -1, kind="stable")[:, :2]
        vals, q = scores[rows, cols], scores * 0.9 + 0.1 / c
    ls = log_softmax(s)
    wl = feat @ w.T + b
    if detached is None:
        a = softmax(s)[rows, cols] ** 2
        a = np.where(vals == 0, 0.0, a + vals - a.mean(0, keepdims=True))
        wp = softmax(wl)
        rank = (wp / (1 - wp[rows, cols].sum(1, keepdims=True) + 1e-6)
                + ls / (1 - ls[rows, cols].sum(1, keepdims=True) + 1e-6))
        pos = np.argsort(np.argsort(-rank, -1, kind="stable"), -1)
        z = (1.0 / (pos + 1)).astype(np.float32).astype(np.float64)
        keep = np.ones((n, c), bool)
        keep[rows, cols] = False
        z = z[keep].reshape(n, -1)
        detached = (a, z / z.sum(1, keepdims=True))
    a, z = detached
    keep = np.ones((n, c), bool)
    keep[rows, cols] = False
    loss_t = -np.mean(np.sum(a * ls[rows, cols], 1))
    loss_non = -np.mean(np.sum(z * log_softmax(s[keep].reshape(n, -1)), 1))
    loss_weak = -np.mean(np.sum(mu * q * log_softmax(wl), 1))
    return alpha * loss_t + beta * loss_non + loss_weak, detached


@pytest.mark.parametrize("n,c,ch,alpha,beta,mu,soft,seed", [(6, 8, 5, 0.5, 0.3, 0.02, False, 7),
                                                           (9, 12, 3, 1.0, 0.1, 0.1, True, 8)])
def test_uskd_against_numpy(n, c, ch, alpha, beta, mu, soft, seed):
    r = np.random.default_rng(seed)
    s, feat = r.normal(0, 3, (n, c)), r.normal(0, 1, (n, ch))
    w, b = r.normal(0, 0.5, (c, ch)), r.normal(0, 0.1, c)
    y = r.integers(0, c, n)
    scores = np.eye(c)[y] * 0.8 + np.eye(c)[(y + 1) % c] * 0.2 if soft else None
    combined = L.build_losses([dict(type="uskd", models=["Student"], key="mid", alpha=alpha, beta=beta, mu=mu)])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731

    def total(s_, f_, w_, b_):
        return combined({"uskd_Student": {"fc": {"kernel": w_.T, "bias": b_}}},
                        {"Student": {"logits": s_, "mid": f_}}, None if soft else jnp.asarray(y),
                        soft_labels=None if scores is None else f32(scores))[0]

    value, grads = jax.value_and_grad(total, argnums=(0, 1, 2, 3))(f32(s), f32(feat), f32(w), f32(b))
    ref, det = np_uskd(s, feat, w, b, y, alpha, beta, mu, scores)
    close(value, ref, 1e-5)
    args = [s, feat, w, b]
    for k in range(4):
        def f(v, k=k):
            a = list(args)
            a[k] = v
            return np_uskd(*a, y, alpha, beta, mu, scores, det)[0]
        close(grads[k], numeric_grad(f, args[k]))


def test_uskd_pools_a_feature_map_and_initialises_fc_like_torch():
    r = np.random.default_rng(9)
    fmap = r.normal(0, 1, (4, 3, 3, 5)).astype(np.float32)
    params = uskd.uskd_init(jax.random.PRNGKey(0), fmap, jnp.zeros((4, 7)))
    kernel = np.asarray(params["fc"]["kernel"])
    assert kernel.shape == (5, 7) and np.abs(kernel).max() <= 1 / math.sqrt(5)  # U(±1/√fan_in)
    pooled = fmap.mean(axis=(1, 2))
    s = r.normal(0, 1, (4, 7)).astype(np.float32)
    y = jnp.asarray([0, 3, 6, 2])
    a = uskd.uskd_loss(params, fmap, s, y)
    b = uskd.uskd_loss(params, pooled, s, y)
    assert abs(float(a) - float(b)) <= 1e-6 * abs(float(b))


# --- CTKD -----------------------------------------------------------------------------------------------------

def np_lambda(epoch, loops=10.0, hi=0.0, lo=-1.0):
    e = min(max(epoch, 0.0), loops)
    return (math.cos(math.pi * e / loops) + 1) / 2 * (hi - lo) + lo


@pytest.mark.parametrize("epoch,g,t_start,t_end,stand,seed", [(1.0, 1.0, 1.0, 20.0, False, 10),
                                                             (6.0, -0.7, 2.0, 10.0, False, 11),
                                                             (14.0, 0.4, 1.0, 20.0, True, 12)])
def test_ctkd_kd_reversed_gradient_and_curriculum(epoch, g, t_start, t_end, stand, seed):
    """Through CombinedLoss as training calls it: the student gets ∂L/∂s, the parameter λ(epoch)·∂L/∂g."""
    r = np.random.default_rng(seed)
    s, t = r.normal(0, 3, (5, 7)), r.normal(0, 3, (5, 7))
    weight = 0.9
    combined = L.build_losses([dict(type="ctkd", weight=weight, logit_stand=stand, t_start=t_start, t_end=t_end)])
    pkey = combined.param_key(0, ("Student", "Teacher"))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731

    def total(gt, a):
        return combined({pkey: {"global_t": gt}}, {"Student": {"logits": a}, "Teacher": {"logits": f32(t)}}, None,
                        epoch=jnp.float32(epoch))[0]

    value, (g_param, g_student) = jax.value_and_grad(total, argnums=(0, 1))(jnp.float32(g), f32(s))
    temp = lambda v: t_start + t_end / (1 + math.exp(-v))  # noqa: E731
    loss = lambda v, a: weight * np_kd(a, t, temp(v), stand)  # noqa: E731
    close(value, loss(g, s), 1e-4)  # T ≈ 10–20: a small KL, float32 keeps ~1e-5 of it
    close(g_student, numeric_grad(lambda a: loss(g, a), s))
    plain = (loss(g + 1e-6, s) - loss(g - 1e-6, s)) / 2e-6
    close(g_param, np_lambda(epoch) * plain, 1e-2)  # ∂L/∂T at large T: float32 keeps ~1e-3 (LOSSES.md §5)
    assert (float(g_param) * plain <= 0) and (np_lambda(epoch) < 0)  # reversed: the parameter ascends the loss


def test_ctkd_curriculum_values():
    for e in (0.0, 1.0, 2.0, 5.0, 9.0, 10.0, 11.0, 240.0):
        assert abs(float(ctkd.curriculum_lambda(e, 10.0)) - np_lambda(e)) < 1e-6
    assert abs(float(ctkd.curriculum_lambda(3.0, 5.0, 0.5, -2.0)) - np_lambda(3.0, 5.0, 0.5, -2.0)) < 1e-6


def test_ctkd_dkd_temperature_gradient_is_finite_and_exact():
    """DKD at a learnable T: torch's temperature gradient is NaN (0·log 0 in the teacher's masked NCKD softmax);
    kdjax's matches a float64 central difference of the DKD formula."""
    r = np.random.default_rng(13)
    s, t = r.normal(0, 3, (6, 5)), r.normal(0, 3, (6, 5))
    y = r.integers(0, 5, 6)

    def np_dkd(T):
        n = len(s)
        gt = np.eye(5)[y].astype(bool)
        ps, pt = softmax(s / T), softmax(t / T)
        bs = np.stack([ps[gt], ps[~gt].reshape(n, -1).sum(1)], 1)
        bt = np.stack([pt[gt], pt[~gt].reshape(n, -1).sum(1)], 1)
        tckd = np.sum(bt * (np.log(bt) - np.log(bs))) * T * T / n
        qs, qt = log_softmax(s / T - 1000 * gt), softmax(t / T - 1000 * gt)
        nckd = np.sum(np.where(qt > 0, qt * (np.log(np.where(qt > 0, qt, 1)) - qs), 0)) * T * T / n
        return 1.0 * tckd + 2.0 * nckd

    temp = 7.3
    grad = jax.grad(lambda v: ctkd.dkd_loss(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32),
                                            jnp.asarray(y), v, 1.0, 2.0))(jnp.float32(temp))
    close(grad, (np_dkd(temp + 1e-5) - np_dkd(temp - 1e-5)) / 2e-5, 1e-3)
