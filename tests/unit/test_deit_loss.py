"""`deit` (facebookresearch/deit losses.py DistillationLoss): the golden cases of ../shared/golden_methods (reference
runs of the original code), and other shapes, seeds and hyper-parameters against a float64 numpy computation of the
formula in LOSSES.md §15, written here (values and the analytic gradients), plus its config checks.

KDJAX_GOLDEN_METHODS_DIR overrides the golden folder (default ../shared/golden_methods).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kdjax.losses as L
from kdjax.errors import ConfigError
from kdjax.losses import deit
from kdjax.tools import verify_golden

from conftest import REPO  # noqa: E402

GOLDEN = os.environ.get("KDJAX_GOLDEN_METHODS_DIR", os.path.join(REPO, "..", "shared", "golden_methods"))


def _cases():
    path = os.path.join(GOLDEN, "manifest.json")
    if not os.path.isfile(path):
        return [], {}
    with open(path) as f:
        m = json.load(f)
    return [c for c in m["cases"] if c["case"].startswith("deit_")], m.get("conventions", {})


CASES, CONVENTIONS = _cases()


@pytest.mark.skipif(not CASES, reason=f"no deit_* cases in {GOLDEN}/manifest.json (set KDJAX_GOLDEN_METHODS_DIR)")
@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_golden_case(case):
    result = verify_golden.run_case(GOLDEN, case, CONVENTIONS)
    assert result.passed, result.line()
    assert not any(n.startswith("not produced") for n in result.notes), result.line()


# ---- float64 numpy formula ----------------------------------------------------------------------------------------

def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_deit(cls, dist, t, y, kind, alpha, tau, eps=None):
    """(loss, d loss/d cls, d loss/d dist) in float64 from LOSSES.md §15."""
    cls, dist, t = (np.asarray(a, np.float64) for a in (cls, dist, t))
    n, c = cls.shape
    q = np.eye(c)[y]
    if eps is not None:
        q = (1 - eps) * q + eps / c
    base = -np.mean(np.sum(q * np_log_softmax(cls), -1))
    g_base = (np.exp(np_log_softmax(cls)) - q) / n
    if kind == "none":
        return base, g_base, np.zeros_like(dist)
    if kind == "soft":
        lt, ls = np_log_softmax(t / tau), np_log_softmax(dist / tau)
        kd = tau ** 2 * np.sum(np.exp(lt) * (lt - ls)) / (n * c)
        g_kd = tau / (n * c) * (np.exp(ls) - np.exp(lt))
    else:
        hard = np.eye(c)[np.argmax(t, -1)]
        kd = -np.mean(np.sum(hard * np_log_softmax(dist), -1))
        g_kd = (np.exp(np_log_softmax(dist)) - hard) / n
    return (1 - alpha) * base + alpha * kd, (1 - alpha) * g_base, alpha * g_kd


CONFIGS = [("soft", 0.5, 1.0, 3, 4, None), ("soft", 0.3, 4.0, 11, 6, None), ("hard", 0.5, 1.0, 7, 13, None),
           ("hard", 0.9, 1.0, 1, 3, 0.1), ("none", 0.5, 1.0, 9, 2, None), ("soft", 1.0, 0.5, 5, 50, 0.2),
           ("hard", 0.0, 1.0, 4, 8, None)]


@pytest.mark.parametrize("kind,alpha,tau,n,c,eps", CONFIGS)
def test_against_float64_formula(kind, alpha, tau, n, c, eps):
    rng = np.random.default_rng(n * 100 + c)
    cls, dist, t = (rng.normal(size=(n, c)).astype(np.float32) * s for s in (3.0, 3.0, 5.0))
    y = rng.integers(0, c, n)
    loss = lambda a, b, tt: deit.deit_loss(a, b, tt, y, kind, alpha, tau, eps)  # noqa: E731
    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(jnp.asarray(cls), jnp.asarray(dist), jnp.asarray(t))
    ref, g_cls, g_dist = np_deit(cls, dist, t, y, kind, alpha, tau, eps)
    np.testing.assert_allclose(float(value), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads[0]), g_cls, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grads[1]), g_dist, rtol=1e-4, atol=1e-7)
    assert not np.any(np.asarray(grads[2]))  # the teacher runs under no_grad


def _entry(**kw):
    return dict(type="deit", pairs=[["Student", "Teacher"]], s_keys=["logits", "logits_dist"], t_keys=["logits"], **kw)


def test_config_entry_logs_base_and_distillation_terms():
    rng = np.random.default_rng(1)
    cls, dist, t = (rng.normal(size=(6, 10)).astype(np.float32) for _ in range(3))
    y = rng.integers(0, 10, 6)
    losses = L.build_losses([_entry(weight=2.0, distillation_type="soft", alpha=0.25, tau=2.0)])
    outputs = {"Student": {"logits": cls, "logits_dist": dist}, "Teacher": {"logits": t}}
    total, terms = losses({}, outputs, y)
    assert set(terms) == {"deit/Student-Teacher/base", "deit/Student-Teacher/distillation"}
    base_only = np_deit(cls, dist, t, y, "soft", 0.0, 2.0)[0]
    kd_only = np_deit(cls, dist, t, y, "soft", 1.0, 2.0)[0]
    np.testing.assert_allclose(float(terms["deit/Student-Teacher/base"]), 2 * 0.75 * base_only, rtol=1e-5)
    np.testing.assert_allclose(float(terms["deit/Student-Teacher/distillation"]), 2 * 0.25 * kd_only, rtol=1e-5)
    np.testing.assert_allclose(float(total), 2 * np_deit(cls, dist, t, y, "soft", 0.25, 2.0)[0], rtol=1e-5)


def test_mixup_soft_labels_use_soft_target_ce():
    """DeiT trains with mixup/cutmix, its base criterion then SoftTargetCrossEntropy: −Σ q log softmax(cls), mean."""
    rng = np.random.default_rng(2)
    cls, dist, t = (rng.normal(size=(4, 5)).astype(np.float32) for _ in range(3))
    q = rng.dirichlet(np.ones(5), 4).astype(np.float32)
    losses = L.build_losses([_entry(distillation_type="hard", alpha=0.5)])
    outputs = {"Student": {"logits": cls, "logits_dist": dist}, "Teacher": {"logits": t}}
    _, terms = losses({}, outputs, np.zeros(4, np.int32), soft_labels=q)
    expected = 0.5 * -np.mean(np.sum(q * np_log_softmax(cls.astype(np.float64)), -1))
    np.testing.assert_allclose(float(terms["deit/Student-Teacher/base"]), expected, rtol=1e-5)


@pytest.mark.parametrize("change,field", [
    (dict(s_keys=["logits"]), "losses[0].s_keys"),
    (dict(t_keys=["logits", "avg_pool"]), "losses[0].t_keys"),
    (dict(distillation_type="medium"), "losses[0].params.distillation_type"),
    (dict(alpha=1.5), "losses[0].params.alpha"),
    (dict(tau=0.0), "losses[0].params.tau"),
])
def test_bad_entries_are_config_errors(change, field):
    entry = dict(_entry(), **change)
    with pytest.raises(ConfigError) as info:
        L.validate_losses([entry], ["Student", "Teacher"],
                          {"Student": {"logits", "logits_dist"}, "Teacher": {"logits"}}, {"Teacher": True})
    assert info.value.field == field


def test_keys_and_frozen_teacher_are_checked():
    captured = {"Student": {"logits"}, "Teacher": {"logits"}}
    with pytest.raises(ConfigError, match="does not capture 'logits_dist'"):
        L.validate_losses([_entry()], ["Student", "Teacher"], captured, {"Teacher": True})
    captured["Student"].add("logits_dist")
    with pytest.raises(ConfigError, match="frozen"):
        L.validate_losses([_entry()], ["Student", "Teacher"], captured, {"Teacher": False})
    with pytest.raises(ConfigError, match="needs s_keys and t_keys"):
        L.validate_losses([dict(type="deit", pairs=[["Student", "Teacher"]])], ["Student", "Teacher"], captured,
                          {"Teacher": True})


def test_shape_check_names_the_heads():
    losses = L.build_losses([_entry()])
    outputs = {"Student": {"logits": jax.ShapeDtypeStruct((2, 10), jnp.float32),
                           "logits_dist": jax.ShapeDtypeStruct((2, 10), jnp.float32)},
               "Teacher": {"logits": jax.ShapeDtypeStruct((2, 1000), jnp.float32)}}
    with pytest.raises(ConfigError, match="distillation head"):
        losses.shape_check(outputs)
