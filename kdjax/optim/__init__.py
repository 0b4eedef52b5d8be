"""Optimizer choices beyond optax's (`config.optim.name`): DOT (`dot.py`). Below `config` and `steps` in the layers,
so `config.check` can refuse an optimizer config before anything is built and `steps` can build it."""

from kdjax.errors import ConfigError


def check_optimizer(optim, field: str = "optim") -> None:
    """ConfigError for an optimizer config `kdjax.steps.build_optimizer` would refuse (checked before training)."""
    name = optim.get("name", "sgd")
    if name not in ("sgd", "adamw", "dot"):
        raise ConfigError(f"{field}.name", f"unknown optimizer {name!r}; use 'sgd', 'adamw' or 'dot'")
    if name == "dot":
        from kdjax.optim.dot import check_dot

        check_dot(optim, field)
    elif float(optim.get("delta", 0.0) or 0.0) != 0:
        raise ConfigError(f"{field}.delta", f"is DOT's momentum split and {name!r} has none: set {field}.name='dot' "
                                            f"or {field}.delta=0")
