"""WSL's gradients at large (×30) logits against a float64 numpy evaluation of the paper's formula.

WSL (Zhou et al., ICLR 2021; PaddleClas WSLLoss): L = T² · mean_n w_n · (−Σ_c softmax(t_n/T)_c · log softmax(s_n/T)_c),
w_n = 1 − exp(−max(CE(s_n, y_n) / (CE(t_n, y_n) + 1e-7), 0)) from the detached logits at T = 1.

The gradients in float64 (no autodiff):
  ∂L/∂s = T²/N · w · (q − p)/T                 q = softmax(s/T), p = softmax(t/T)
  ∂L/∂t = −T²/N · w · p ⊙ (d − <p, d>)/T        d = log q − (log q)_k, k the teacher's top class (shift-free)

Each element is compared relative to the size of the terms it is a difference of (its conditioning): w·(q + p) on
the student side, w·p ⊙ (|d| + <p, |d|>) on the teacher side (times T/N). Float32 cannot resolve an element below
that, and a wrong row weight (the earlier 1 − exp(−r) in float32 at small r) fails it by orders of magnitude.
Also checked golden-style: |a − b| <= 1e-5·|b| + 1e-7.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.losses import wsl

RTOL = 1e-5


def _log_softmax(z):
    m = z.max(-1, keepdims=True)
    e = np.exp(z - m)
    e[np.arange(len(z)), np.argmax(z, -1)] = 0.0  # the top class's exp(0) = 1 kept out of the sum: log1p
    return z - m - np.log1p(e.sum(-1))[:, None]


def _reference(s, t, y, temp):
    """(loss, grad_s, grad_t, scale_s, scale_t) in float64."""
    s, t = s.astype(np.float64), t.astype(np.float64)
    n = len(s)
    rows = np.arange(n)
    ce_s, ce_t = -_log_softmax(s)[rows, y], -_log_softmax(t)[rows, y]
    w = -np.expm1(-np.maximum(ce_s / (ce_t + 1e-7), 0.0))
    log_q, p = _log_softmax(s / temp), np.exp(_log_softmax(t / temp))
    loss = temp * temp * np.mean(w * -(p * log_q).sum(-1))
    coef = (temp * temp / n) * w[:, None] / temp
    grad_s = coef * (np.exp(log_q) - p)
    d = log_q - log_q[rows, np.argmax(t, -1)][:, None]
    grad_t = -coef * p * (d - (p * d).sum(-1, keepdims=True))
    scale_t = coef * p * (np.abs(d) + (p * np.abs(d)).sum(-1, keepdims=True))
    return loss, grad_s, grad_t, coef * (np.exp(log_q) + p), scale_t


def _case(seed, n, c, saturated):
    r = np.random.default_rng(seed)
    s = (r.uniform(-1, 1, (n, c)) * 30).astype(np.float32)
    t = (r.uniform(-1, 1, (n, c)) * 30).astype(np.float32)
    y = r.integers(0, c, n)
    if saturated:  # the first half of the teacher rows: one-hot ±30 at the label
        h = (n + 1) // 2
        t[:h] = -30.0
        t[np.arange(h), y[:h]] = 30.0
    return s, t, y


SHAPES = [(8, 10), (16, 100), (2, 5), (32, 3)]
TEMPS = (1.0, 2.0, 4.0)
SEEDS = 6
# one compiled program per shape: loss and both gradients for every (seed, temperature) at once
_GRADS = jax.jit(jax.vmap(jax.value_and_grad(wsl.wsl_loss, argnums=(0, 1))))


def _run(s, t, y, temp):
    loss, (gs, gt) = _GRADS(*(jnp.asarray(np.asarray(v)) for v in (s, t, y)), jnp.asarray(temp, jnp.float32))
    return np.asarray(loss, np.float64), np.asarray(gs, np.float64), np.asarray(gt, np.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=[f"n{n}c{c}" for n, c in SHAPES])
def test_wsl_gradients_at_large_logits(shape):
    runs = [(seed, temp) + _case(100 * shape[1] + seed, *shape, saturated=seed % 2 == 0)
            for seed in range(SEEDS) for temp in TEMPS]
    loss, gs, gt = _run(*(np.stack([r[k] for r in runs]) for k in (2, 3, 4)), [r[1] for r in runs])
    for i, (seed, temp, s, t, y) in enumerate(runs):
        ref_loss, ref_s, ref_t, scale_s, scale_t = _reference(s, t, y, temp)
        assert abs(loss[i] - ref_loss) <= RTOL * abs(ref_loss) + 1e-7, (seed, temp)
        for side, got, ref, scale in (("student", gs[i], ref_s, scale_s), ("teacher", gt[i], ref_t, scale_t)):
            err = np.abs(got - ref)
            assert np.all(err <= RTOL * scale + 1e-30), (seed, temp, side, np.max(err / (scale + 1e-30)))
            assert np.all(err <= RTOL * np.abs(ref) + 1e-7), (seed, temp, side,
                                                               np.max(err / np.maximum(np.abs(ref), 1e-2)))


def test_wsl_row_weight_keeps_its_precision_when_small():
    """A student far more confident than the teacher: w ≈ r ≈ 1e-6, where 1 − exp(−r) in float32 is off by ~5%."""
    s = np.array([[12.0, -3.0, -2.0, 0.5]], np.float32)
    t = np.array([[0.2, 0.1, 0.0, -0.1]], np.float32)
    y = np.array([0])
    _, _, grad = _run(s[None], t[None], y[None], [4.0])
    _, _, ref_t, _, scale_t = _reference(s, t, y, 4.0)
    assert np.all(np.abs(grad[0] - ref_t) <= RTOL * scale_t)
