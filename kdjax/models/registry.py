"""Architecture registry: config strings (`arch`) name model constructors.

An arch is a registered zoo name (`ResNet34`, `deit_tiny_distilled_patch16_224`) or a user's own Flax module,
`path/to/file.py:ClassName` or `package.module:ClassName` (kdjax/models/user_module.py).
"""

from typing import Callable, Dict

import flax.linen as nn

from kdjax.errors import ConfigError

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


class ModelInputError(ValueError):
    """A model built for other inputs than it was given (e.g. a ViT's img_size); the config check reports it as
    `models.<name>.kwargs`."""


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


def check_arch(arch, field: str = "models[?].arch") -> None:
    """ConfigError unless `arch` is a registered name or a user module that resolves (file, module, class)."""
    from kdjax.models import user_module

    if user_module.is_user_arch(arch):
        user_module.resolve(arch, field)
    elif arch not in _MODELS:
        raise ConfigError(field, f"unknown arch {arch!r}; known archs: {', '.join(list_models())}, or your own "
                                 "Flax module as 'path/to/file.py:ClassName'")


def with_num_classes(arch: str, kwargs: dict, num_classes: int) -> dict:
    """`kwargs` plus num_classes=`num_classes` unless given, or unless a user module's constructor has no such
    argument (its logits then set the width; the config check compares it with the data's classes)."""
    from kdjax.models import user_module

    kwargs = dict(kwargs)
    if "num_classes" in kwargs:
        return kwargs
    if user_module.is_user_arch(arch) and not user_module.accepts(user_module.resolve(arch)[0], "num_classes"):
        return kwargs
    kwargs["num_classes"] = num_classes
    return kwargs


def get_model(arch: str, field: str = "models[?].arch", **kwargs) -> nn.Module:
    """Build `arch` with `kwargs`; unknown names are a ConfigError listing what exists."""
    from kdjax.models import user_module

    if user_module.is_user_arch(arch):
        return user_module.build(arch, field, **kwargs)
    check_arch(arch, field)
    try:
        return _MODELS[arch](**kwargs)
    except TypeError as e:
        raise ConfigError(field.replace(".arch", ".kwargs"), f"arch {arch!r} does not accept these kwargs {kwargs}: {e}")
