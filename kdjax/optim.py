"""optax optimizer and learning-rate schedule from `config.optim` (SGD momentum + L2 weight decay by default)."""

import optax

from kdjax.errors import ConfigError


def lr_schedule(optim, steps_per_epoch: int, total_steps: int):
    base = float(optim.lr)
    warmup = int(round(float(optim.get("warmup_epochs", 0.0)) * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    kind = optim.get("schedule", "cosine")
    if kind == "cosine":
        main = optax.cosine_decay_schedule(base, max(total_steps - warmup, 1))
    elif kind == "step":
        boundaries = {int(e * steps_per_epoch) - warmup: float(optim.get("decay_rate", 0.1))
                      for e in optim.get("milestones", ())}
        main = optax.piecewise_constant_schedule(base, {b: r for b, r in boundaries.items() if b > 0})
    elif kind == "constant":
        main = optax.constant_schedule(base)
    else:
        raise ConfigError("optim.schedule", f"unknown schedule {kind!r}; use 'cosine', 'step' or 'constant'")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), main], [warmup])


def build_optimizer(optim, steps_per_epoch: int, total_steps: int):
    """Returns (optax transformation, schedule). Weight decay is PyTorch/Paddle-style L2 added to the gradient."""
    schedule = lr_schedule(optim, steps_per_epoch, total_steps)
    name = optim.get("name", "sgd")
    wd = float(optim.get("weight_decay", 0.0))
    if name == "sgd":
        inner = optax.sgd(schedule, momentum=float(optim.get("momentum", 0.9)) or None,
                          nesterov=bool(optim.get("nesterov", False)))
    elif name == "adamw":
        return optax.adamw(schedule, weight_decay=wd), schedule
    else:
        raise ConfigError("optim.name", f"unknown optimizer {name!r}; use 'sgd' or 'adamw'")
    tx = optax.chain(optax.add_decayed_weights(wd), inner) if wd else inner
    clip = float(optim.get("grad_clip_norm", 0.0) or 0.0)
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx, schedule
