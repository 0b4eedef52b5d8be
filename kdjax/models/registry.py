"""Architecture registry: config strings (`arch`) name model constructors."""

from typing import Callable, Dict

import flax.linen as nn

from kdjax.errors import ConfigError

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: make a Flax module class (or a factory returning one) available as `arch=name`."""

    def wrap(ctor):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ctor
        return ctor

    return wrap


def list_models():
    return sorted(_MODELS)


def get_model(arch: str, field: str = "models[?].arch", **kwargs) -> nn.Module:
    """Build `arch` with `kwargs`; unknown names are a ConfigError listing what exists."""
    if arch not in _MODELS:
        raise ConfigError(field, f"unknown arch {arch!r}; known archs: {', '.join(list_models())}")
    try:
        return _MODELS[arch](**kwargs)
    except TypeError as e:
        raise ConfigError(field.replace(".arch", ".kwargs"), f"arch {arch!r} does not accept these kwargs {kwargs}: {e}")
