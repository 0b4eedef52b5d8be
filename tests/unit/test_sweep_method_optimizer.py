"""The sweep runs each method on its own teacher/student/budget but keeps a method that IS an optimizer choice (KD +
DOT: optim.name='dot') on that optimizer; every other method keeps the sweep's optimizer."""

from conftest import load_config
from kdjax.config.check import check
from kdjax.tools.sweep_configs import method_config

NEW_METHODS = ("reviewkd", "pkt", "sp", "nst", "vid", "ofd", "ickd", "kd_dot")


def test_kd_dot_keeps_dot_and_the_sweep_keeps_its_schedule():
    sweep = load_config("configs/sweep_fashion_mnist.py")
    with sweep.unlocked():
        sweep.base.optim.lr = 0.037  # the sweep's own value, not kd_dot.py's
    c = method_config(sweep, "kd_dot", 0, "/teacher/export")
    assert (c.optim.name, c.optim.delta, c.optim.nesterov, c.optim.momentum) == ("dot", 0.075, False, 0.9)
    assert c.optim.lr == 0.037 and c.optim.schedule == sweep.base.optim.schedule
    kd = method_config(sweep, "kd", 0, "/teacher/export")
    assert (kd.optim.name, kd.optim.delta, kd.optim.nesterov) == ("sgd", 0.0, True)


def test_the_new_methods_are_in_the_sweep_and_pass_its_pre_check():
    sweep = load_config("configs/sweep_fashion_mnist.py")
    assert set(NEW_METHODS) <= set(sweep.methods)
    for method in NEW_METHODS:
        check(method_config(sweep, method, 0, {"": "/t", "Teacher2": "/t2"}), splits=(), inits=False)
    ofd = method_config(sweep, "ofd", 0, "/t")
    assert ofd.models.Teacher.train_mode and ofd.models.Teacher.arch == sweep.teacher.arch


def test_a_method_that_clips_its_gradient_keeps_its_clip_in_the_sweep():
    """configs/mlkd_ls.py clips the gradient norm at 2 (without it the student's logits blow up and it ends at
    chance); the sweep, whose own optimizer clips nothing, must not drop it. Others stay unclipped."""
    sweep = load_config("configs/sweep_fashion_mnist.py")
    assert not sweep.base.optim.grad_clip_norm
    own = load_config("configs/mlkd_ls.py").optim.grad_clip_norm
    assert own > 0 and method_config(sweep, "mlkd_ls", 0, "/t").optim.grad_clip_norm == own
    for method in ("mlkd", "kd", "baseline"):
        assert not method_config(sweep, method, 0, "/t").optim.grad_clip_norm
