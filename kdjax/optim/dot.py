"""DOT, the distillation-oriented trainer (Zhao et al., ICCV 2023): SGD with separate momenta for the task and the
distillation gradients, as mdistiller's `DistillationOrientedTrainer` (mdistiller/engine/dot.py) computes them.

`config.optim.name='dot'` with `momentum` μ and `delta` δ: the task gradient (terms of LossSpec.task losses, gt_ce)
gets momentum μ − δ, the distillation gradient (every other term) μ + δ, each in its own buffer. Per parameter, one
step with learning rate lr and weight decay wd, exactly as the reference orders it:

  task   (p reached by the task loss):   d = g_task + wd·p;  b_task ← d at the first step, else m·b_task + d, with
                                         m = μ − δ if p is also reached by the distillation loss, else (μ−δ + μ+δ)/2;
                                         p ← p − lr·b_task
  distil (p reached by the distillation loss): b_kd ← g_kd at the first step (no weight decay, as the reference),
                                         else μ+δ · b_kd + g_kd if p is also reached by the task loss,
                                         else (μ−δ + μ+δ)/2 · b_kd + g_kd + wd·p;  p ← p − lr·b_kd

"Reached" is the reference's `p.grad is not None` after that loss's backward pass: whether the loss depends on the
parameter through differentiable operations. kdjax reads it off the traced step (`reached`): the student's classifier
is reached only by the task loss when the distillation losses read intermediate features, loss-side modules (ReviewKD's
ABFs, OFD connectors) only by the distillation loss. A parameter reached by neither is left alone (no weight decay).
"""

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from kdjax.errors import ConfigError


def check_dot(optim, field: str = "optim") -> None:
    """ConfigError for DOT settings the reference does not have."""
    mu, delta = optim.get("momentum", 0.9), optim.get("delta", None)
    if delta is None or (isinstance(delta, (int, float)) and not isinstance(delta, bool) and delta == 0):
        raise ConfigError(f"{field}.delta", "optim.name='dot' needs optim.delta > 0 (mdistiller SOLVER.DOT.DELTA, "
                                            "0.075): task momentum = momentum − delta, distillation momentum = "
                                            "momentum + delta (delta 0 is plain momentum SGD: use optim.name='sgd')")
    for name, value in (("momentum", mu), ("delta", delta)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value == value:
            raise ConfigError(f"{field}.{name}", f"must be a number, got {value!r}")
    if mu - delta < 0 or mu + delta < 0:
        raise ConfigError(f"{field}.delta", f"momentum ± delta must be >= 0 (the reference refuses negative momenta), "
                                            f"got momentum={mu}, delta={delta}")
    if mu + delta >= 1:  # optim.momentum itself must be < 1 for the same reason (kdjax/config/fields.py)
        raise ConfigError(f"{field}.delta", f"momentum + delta = {mu + delta:g} >= 1: the distillation momentum "
                                            f"buffer would grow without bound (training diverges); use delta < "
                                            f"{1 - mu:g} with momentum={mu}")
    if optim.get("nesterov", False):
        raise ConfigError(f"{field}.nesterov", "DOT is plain momentum SGD (no Nesterov); set optim.nesterov=False")
    if float(optim.get("grad_clip_norm", 0.0) or 0.0) > 0:
        raise ConfigError(f"{field}.grad_clip_norm", "DOT has no gradient clipping in the reference; set it to 0")


class DotOptimizer:
    """Not an optax transformation: `step` takes the task and distillation gradients apart and returns the new
    parameters. `init` gives the state {"count", "task", "kd"} (two momentum buffers shaped like the params)."""

    def __init__(self, schedule: Callable, momentum: float, delta: float, weight_decay: float):
        self.schedule = schedule
        self.m_task = float(momentum) - float(delta)
        self.m_kd = float(momentum) + float(delta)
        self.weight_decay = float(weight_decay)

    def init(self, params) -> Dict[str, Any]:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return {"count": jnp.zeros((), jnp.int32), "task": zeros, "kd": jax.tree.map(jnp.zeros_like, params)}

    def step(self, task_grads, kd_grads, state, params, task_mask, kd_mask) -> Tuple[Any, Dict[str, Any]]:
        """(new params, new state). Masks: a Python bool per parameter leaf, whether that loss reaches it."""
        lr = self.schedule(state["count"])
        first = state["count"] == 0
        wd, m_avg = self.weight_decay, (self.m_kd + self.m_task) / 2.0

        def leaf(p, g_t, g_k, b_t, b_k, in_task, in_kd):
            if in_task:
                d = g_t + wd * p if wd else g_t
                b_t = jnp.where(first, d, (self.m_task if in_kd else m_avg) * b_t + d)
                p = p - lr * b_t
            if in_kd:
                if in_task:
                    later = self.m_kd * b_k + g_k
                else:
                    later = m_avg * b_k + (g_k + wd * p if wd else g_k)
                b_k = jnp.where(first, g_k, later)
                p = p - lr * b_k
            return p, b_t, b_k

        treedef = jax.tree.structure(params)
        leaves = [leaf(*args) for args in zip(*(treedef.flatten_up_to(t) for t in (
            params, task_grads, kd_grads, state["task"], state["kd"], task_mask, kd_mask)))]
        new_params, task_buf, kd_buf = (treedef.unflatten([x[i] for x in leaves]) for i in range(3))
        return new_params, {"count": state["count"] + 1, "task": task_buf, "kd": kd_buf}


# ---- which parameters a loss reaches -----------------------------------------------------------------------------

def _sub_jaxpr(eqn):
    """The one sub-jaxpr an equation calls with its own inputs (pjit, custom_jvp/vjp calls), else None."""
    for value in eqn.params.values():
        jaxpr = getattr(value, "jaxpr", value)
        if isinstance(jaxpr, jex_core.Jaxpr) and len(jaxpr.invars) == len(eqn.invars):
            return jaxpr
    return None


def _float(var) -> bool:
    return jnp.issubdtype(getattr(var.aval, "dtype", jnp.int32), jnp.inexact)


def _dependencies(jaxpr, in_deps):
    """For each output of `jaxpr`: the set of input-leaf indices it depends on through differentiable operations
    (stop_gradient and integer/boolean values cut the dependence, as torch's autograd graph does)."""
    deps = {v: d for v, d in zip(jaxpr.invars, in_deps)}

    def read(a):
        return frozenset() if isinstance(a, jex_core.Literal) else deps.get(a, frozenset())

    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        if eqn.primitive.name == "stop_gradient":
            outs = [frozenset()] * len(eqn.outvars)
        else:
            sub = _sub_jaxpr(eqn)
            if sub is not None and len(sub.outvars) == len(eqn.outvars):
                outs = _dependencies(sub, ins)
            else:  # scan, while, cond, ...: every output may depend on every input
                union = frozenset().union(*ins) if ins else frozenset()
                outs = [union] * len(eqn.outvars)
        for v, d in zip(eqn.outvars, outs):
            deps[v] = d if _float(v) else frozenset()
    return [read(v) for v in jaxpr.outvars]


def reached(fn: Callable, params, *args):
    """(task mask, kd mask): per leaf of `params`, whether fn(params, *args) = (task loss, distillation loss) depends
    on it. Traced from shapes only (the arguments may be tracers of an enclosing jit)."""
    spec = lambda tree: jax.tree.map(  # noqa: E731
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype if hasattr(a, "dtype") else jnp.result_type(a)), tree)
    closed = jax.make_jaxpr(fn)(spec(params), *(spec(a) for a in args))
    n = len(jax.tree.leaves(params))
    in_deps = [frozenset([i]) if i < n else frozenset() for i in range(len(closed.jaxpr.invars))]
    task, kd = _dependencies(closed.jaxpr, in_deps)
    treedef = jax.tree.structure(params)
    return (treedef.unflatten([i in task for i in range(n)]), treedef.unflatten([i in kd for i in range(n)]))
