"""DOT (optim.name='dot') against a plain numpy transcription of mdistiller's DistillationOrientedTrainer
(mdistiller/engine/dot.py: step_kd, then step) on a tiny quadratic problem, which parameters each loss reaches, and
the config checks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kdjax.optim.dot import DotOptimizer, reached
from kdjax.errors import ConfigError
from kdjax.optim import check_optimizer
from kdjax.steps import build_optimizer


def numpy_dot(params, task_grad_fn, kd_grad_fn, steps, lrs, momentum, delta, wd):
    """The reference's update, line by line (buffers start as None; a parameter is in a group when its grad exists)."""
    m_task, m_kd = momentum - delta, momentum + delta
    p = {k: v.astype(np.float64).copy() for k, v in params.items()}
    buf, kd_buf = {}, {}
    for step in range(steps):
        lr = lrs[step]
        kd_grads = kd_grad_fn(p)      # loss_kd.backward(); step_kd(): kd grads and kd buffers recorded
        task_grads = task_grad_fn(p)  # loss_ce.backward(); step(): the task update first...
        for k, g in task_grads.items():
            d = g + wd * p[k]
            if k not in buf:
                buf[k] = d.copy()
            elif k in kd_grads:
                buf[k] = m_task * buf[k] + d
            else:
                buf[k] = (m_kd + m_task) / 2 * buf[k] + d
            p[k] = p[k] - lr * buf[k]
        for k, g in kd_grads.items():  # ... then the distillation update
            if k not in kd_buf:
                kd_buf[k] = g.copy()
            elif k in task_grads:
                kd_buf[k] = m_kd * kd_buf[k] + g
            else:
                kd_buf[k] = (m_kd + m_task) / 2 * kd_buf[k] + (g + wd * p[k])
            p[k] = p[k] - lr * kd_buf[k]
    return p


A = np.array([[2.0, 0.5, 0.0], [0.1, 1.0, -0.3]], np.float32)
B, C, D, E = (np.array(v, np.float32) for v in ([1.0, -2.0], [0.5, 0.5, 0.5], [3.0, -1.0, 0.2], [-1.0, 2.0, 0.0]))


def task_loss(p):  # reaches "both" and "task_only"
    return 0.5 * jnp.sum(jnp.square(A @ p["both"] - B)) + 0.5 * jnp.sum(jnp.square(p["task_only"] - C))


def kd_loss(p):  # reaches "both" and "kd_only" ("teacher" only through stop_gradient)
    return (0.7 * jnp.sum(jnp.square(p["both"] - D)) + 0.5 * jnp.sum(jnp.square(p["kd_only"] - E))
            + jnp.sum(jax.lax.stop_gradient(p["teacher"]) * p["kd_only"]))


def _np_grads(fn, keys):
    def grads(p):
        g = jax.grad(lambda q: fn(q))({k: jnp.asarray(v, jnp.float32) for k, v in p.items()})
        return {k: np.asarray(g[k], np.float64) for k in keys}
    return grads


@pytest.mark.parametrize("wd,delta", [(0.0, 0.075), (5e-4, 0.075), (0.01, 0.2)])
def test_dot_update_matches_numpy_on_a_quadratic(wd, delta):
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=3).astype(np.float32) for k in ("both", "task_only", "kd_only", "teacher", "none")}
    task_mask, kd_mask = reached(lambda p: (task_loss(p), kd_loss(p)), params)
    assert task_mask == {"both": True, "task_only": True, "kd_only": False, "teacher": False, "none": False}
    assert kd_mask == {"both": True, "task_only": False, "kd_only": True, "teacher": False, "none": False}
    lrs = [0.1, 0.1, 0.05, 0.05, 0.02, 0.02]
    tx = DotOptimizer(lambda count: jnp.asarray(lrs)[count], momentum=0.9, delta=delta, weight_decay=wd)
    p, state = {k: jnp.asarray(v) for k, v in params.items()}, None
    state = tx.init(p)
    step = jax.jit(lambda p, s: tx.step(jax.grad(task_loss)(p), jax.grad(kd_loss)(p), s, p, task_mask, kd_mask))
    for _ in lrs:
        p, state = step(p, state)
    expected = numpy_dot(params, _np_grads(task_loss, ("both", "task_only")),
                         _np_grads(kd_loss, ("both", "kd_only")), len(lrs), lrs, 0.9, delta, wd)
    for k in params:
        np.testing.assert_allclose(np.asarray(p[k]), expected[k], rtol=2e-5, atol=1e-6, err_msg=k)
    np.testing.assert_array_equal(p["none"], params["none"])  # reached by neither: untouched, no weight decay
    assert int(state["count"]) == len(lrs)


def test_dot_with_delta_zero_is_momentum_sgd_on_the_summed_loss():
    """δ = 0 and every parameter reached by both losses: plain heavy-ball SGD (PyTorch style) on task + kd."""
    rng = np.random.default_rng(1)
    p = {"both": jnp.asarray(rng.normal(size=3).astype(np.float32))}
    task = lambda q: 0.5 * jnp.sum(jnp.square(A @ q["both"] - B))  # noqa: E731
    kd = lambda q: 0.7 * jnp.sum(jnp.square(q["both"] - D))  # noqa: E731
    tx = DotOptimizer(lambda count: 0.05, momentum=0.9, delta=0.0, weight_decay=0.0)
    masks = reached(lambda q: (task(q), kd(q)), p)
    state, q, buf = tx.init(p), np.asarray(p["both"], np.float64), None
    for _ in range(5):
        p, state = tx.step(jax.grad(task)(p), jax.grad(kd)(p), state, p, *masks)
        g = np.asarray(jax.grad(lambda x: task({"both": x}) + kd({"both": x}))(jnp.asarray(q, jnp.float32)), np.float64)
        buf = g if buf is None else 0.9 * buf + g
        q = q - 0.05 * buf
    np.testing.assert_allclose(np.asarray(p["both"]), q, rtol=2e-5)


def test_reached_follows_a_real_model_and_loss_config():
    """Feature loss on avg_pool: the student's classifier is task-only, the loss-side connector distillation-only."""
    import kdjax.losses as L
    from kdjax.config.defaults import model_entry
    from kdjax.models.distillation import DistillationModel, build_submodels

    models = ml_collections.ConfigDict({"Student": model_entry("convnet_student", capture=["blocks[2]"]),
                                        "Teacher": model_entry("convnet_teacher", frozen=True, init="x",
                                                               capture=["blocks[2]"])})
    model = DistillationModel(build_submodels(models, 10))
    losses = L.build_losses([dict(type="gt_ce", models=["Student"]),
                             dict(type="ickd", s_keys=["blocks[2]"], t_keys=["blocks[2]"])])
    images = jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.float32)  # shapes only: nothing is computed
    variables = jax.eval_shape(model.init_variables, jax.random.PRNGKey(0), images)
    stats, teacher = {"Student": variables["Student"]["batch_stats"]}, {"Teacher": variables["Teacher"]}

    def forward(p, stats, teacher, x):
        return model.apply({"Student": p}, stats, teacher, x, train=True, rng=jax.random.PRNGKey(0))[0]
    outputs = jax.eval_shape(forward, variables["Student"]["params"], stats, teacher, images)
    params = {"Student": variables["Student"]["params"],
              "_losses": jax.eval_shape(losses.init, jax.random.PRNGKey(1), outputs)}

    def fn(p, stats, teacher, x):
        _, terms = losses(p["_losses"], forward(p["Student"], stats, teacher, x), jnp.zeros((4,), jnp.int32))
        return terms["gt_ce/Student"], terms["ickd/Student-Teacher"]
    task, kd = reached(fn, params, stats, teacher, images)
    assert task["Student"]["fc"]["kernel"] and not kd["Student"]["fc"]["kernel"]
    assert task["Student"]["stage0_conv0"]["Conv_0"]["kernel"] and kd["Student"]["stage0_conv0"]["Conv_0"]["kernel"]
    assert not any(jax.tree.leaves(task["_losses"])) and all(jax.tree.leaves(kd["_losses"]))
    assert losses.task_term_names == ("gt_ce/Student",)


@pytest.mark.parametrize("change,field", [({"delta": None}, "optim.delta"), ({"nesterov": True}, "optim.nesterov"),
                                          ({"delta": 0.95}, "optim.delta"), ({"delta": 0.0}, "optim.delta"), ({"grad_clip_norm": 1.0},
                                                                             "optim.grad_clip_norm")])
def test_dot_settings_the_reference_lacks_are_refused(change, field):
    optim = ml_collections.ConfigDict(dict(name="dot", lr=0.1, momentum=0.9, nesterov=False, delta=0.075,
                                           weight_decay=5e-4, grad_clip_norm=0.0))
    with optim.unlocked():
        optim.update(change)
    with pytest.raises(ConfigError) as e:
        check_optimizer(optim)
    assert e.value.field == field


@pytest.mark.parametrize("momentum,delta", [(0.9, 0.1), (0.9, 0.15), (0.5, 0.5)])
def test_a_distillation_momentum_of_one_or_more_is_refused(momentum, delta):
    # momentum + delta >= 1: the buffer sums gradients without decay (the sweep's delta 0.15 grid point diverged)
    optim = ml_collections.ConfigDict(dict(name="dot", lr=0.1, momentum=momentum, nesterov=False, delta=delta,
                                           weight_decay=5e-4, grad_clip_norm=0.0))
    with pytest.raises(ConfigError, match=r"optim\.delta: momentum \+ delta = .* >= 1"):
        check_optimizer(optim)
    optim.delta = round(0.99 - momentum, 4)
    check_optimizer(optim)


def test_build_optimizer_gives_dot_with_the_two_momenta():
    optim = ml_collections.ConfigDict(dict(name="dot", lr=0.1, momentum=0.9, nesterov=False, delta=0.075,
                                           weight_decay=5e-4, schedule="constant"))
    tx, schedule = build_optimizer(optim, 10, 100)
    assert isinstance(tx, DotOptimizer)
    assert (tx.m_task, tx.m_kd, tx.weight_decay) == pytest.approx((0.825, 0.975, 5e-4))
    assert float(schedule(50)) == pytest.approx(0.1)


def test_delta_without_dot_is_refused():
    """optim.delta only means something to DOT: set with SGD it would be silently ignored."""
    optim = ml_collections.ConfigDict(dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, delta=0.075))
    with pytest.raises(ConfigError) as e:
        check_optimizer(optim)
    assert e.value.field == "optim.delta" and "dot" in str(e.value)
