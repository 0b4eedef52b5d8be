"""Your own Flax module as a teacher or student, unchanged: `arch="path/to/file.py:ClassName"` or
`arch="package.module:ClassName"`, its constructor arguments in the model's `kwargs`.

    --config.models.Student.arch=my_nets.py:TinyNet --config.models.Student.kwargs.width=32

Rules (documented in docs and checked before any compute, each failure a ConfigError naming `models.<name>.arch`
or `.kwargs`):
  * A file path is resolved against the current directory when the config is checked; a module path is imported
    (it must be importable, e.g. on PYTHONPATH). The attribute must be a `flax.linen.Module` subclass (or a
    function returning a Module instance).
  * `num_classes` is passed only when the constructor takes it (a dataclass field or a parameter); otherwise the
    module's output width must already cover the data's classes (checked from shapes).
  * `__call__(x)` gets the normalised NHWC float images and must return logits [N, C]. kdjax inspects its
    signature for a mode flag: `train` / `training` / `is_training` get True in training and False in eval,
    export and inference; `deterministic` / `use_running_average` get the opposite. A module with none of them
    runs the same way in both modes; one that keeps BatchNorm statistics (`batch_stats`) must take such a flag
    (otherwise it would be refused: kdjax cannot switch it to running averages for eval). Dropout draws from the
    `dropout` RNG stream, which kdjax always provides.
  * Features: anything the module records with `kdjax.models.features.record` (or a top-level `self.sow` into
    `intermediates`) under its name, and the output of any submodule by its module path (`backbone/stage3`, the
    Flax names joined with '/', as torchdistill's forward hooks take module paths): those are captured with Flax's
    `capture_intermediates`, only the paths a config names. A path called more than once keeps its last output.
  * The wrapper shares the module's scope (`nn.share_scope`): the variables are exactly the module's own.
  * An export records where the class came from (`spec.json` "user_module": absolute file and its sha256, or the
    module path, and the class name); loading it needs that file at that place (or that module importable).
"""

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from typing import Any, Optional

import flax.linen as nn

from kdjax.errors import CheckpointError, ConfigError

TRUE_IN_TRAINING = ("train", "training", "is_training")
FALSE_IN_TRAINING = ("deterministic", "use_running_average")


def is_user_arch(arch) -> bool:
    """`file.py:Class` or `pkg.mod:Class` (registry names never contain ':')."""
    return isinstance(arch, str) and ":" in arch


def _split(arch: str, field: str):
    target, _, attr = arch.rpartition(":")
    if not target or not attr.isidentifier():
        raise ConfigError(field, f"{arch!r}: a user module is 'path/to/file.py:ClassName' or 'package.module:ClassName'")
    return target, attr


def _is_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _load_file(path: str, field: str):
    if not os.path.isfile(path):
        raise ConfigError(field, f"{path!r} does not exist (relative paths are taken from the current directory "
                                 f"{os.getcwd()}); give the Python file that defines your module")
    name = "kdjax_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    if name in sys.modules and getattr(sys.modules[name], "__kdjax_sha256__", None) == _sha256(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (flax modules) look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ConfigError(field, f"importing {path} failed: {type(e).__name__}: {e}") from None
    module.__kdjax_sha256__ = _sha256(path)
    return module


def resolve(arch: str, field: str = "models[?].arch"):
    """(the class or factory `arch` names, provenance dict for an export spec)."""
    target, attr = _split(arch, field)
    if _is_file(target):
        path = os.path.abspath(os.path.expanduser(target))
        module = _load_file(path, field)
        origin = {"file": path, "sha256": module.__kdjax_sha256__, "class": attr}
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise ConfigError(field, f"cannot import module {target!r} ({type(e).__name__}: {e}); put it on "
                                     "PYTHONPATH or give a file path 'path/to/file.py:ClassName'") from None
        origin = {"module": target, "class": attr}
    if not hasattr(module, attr):
        defined = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                         and v.__module__ == module.__name__)
        raise ConfigError(field, f"{target} defines no {attr!r}; Flax modules defined there: {defined or 'none'}")
    ctor = getattr(module, attr)
    if not (isinstance(ctor, type) and issubclass(ctor, nn.Module)) and not callable(ctor):
        raise ConfigError(field, f"{arch}: {attr} is a {type(ctor).__name__}, not a flax.linen.Module class")
    return ctor, origin


def _call_signature(cls):
    return inspect.signature(cls.__call__).parameters


def mode_argument(module: nn.Module) -> Optional[str]:
    """The `__call__` parameter that tells training from inference, or None."""
    params = _call_signature(type(module))
    for name in TRUE_IN_TRAINING + FALSE_IN_TRAINING:
        if name in params:
            return name
    return None


def accepts(ctor, name: str) -> bool:
    """Whether the constructor takes keyword `name` (a flax dataclass field or a parameter)."""
    try:
        params = inspect.signature(ctor).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class UserModel(nn.Module):
    """Runs a user's module with kdjax's `(x, train=...)` calling convention; variables are the module's own."""

    inner: Any
    arch: str = ""
    mode_arg: Optional[str] = None

    def setup(self):
        nn.share_scope(self, self.inner)

    @property
    def num_classes(self):
        return getattr(self.inner, "num_classes", None)

    def __call__(self, x, train: bool = False):
        kwargs = {}
        if self.mode_arg in TRUE_IN_TRAINING:
            kwargs[self.mode_arg] = train
        elif self.mode_arg in FALSE_IN_TRAINING:
            kwargs[self.mode_arg] = not train
        out = self.inner(x, **kwargs)
        if not hasattr(out, "shape") or len(out.shape) != 2:
            raise TypeError(f"{self.arch}: __call__ must return logits [N, num_classes], returned "
                            f"{type(out).__name__}{list(getattr(out, 'shape', []))}; return the logits and record "
                            "features with kdjax.models.features.record (or capture them by module path)")
        return out


def build(arch: str, field: str = "models[?].arch", **kwargs) -> UserModel:
    ctor, _ = resolve(arch, field)
    try:
        inner = ctor(**kwargs)
    except TypeError as e:
        raise ConfigError(field.replace(".arch", ".kwargs"), f"{arch} does not accept these kwargs {kwargs}: {e}") \
            from None
    if not isinstance(inner, nn.Module):
        raise ConfigError(field, f"{arch} gave a {type(inner).__name__}, not a flax.linen.Module")
    return UserModel(inner, arch=arch, mode_arg=mode_argument(inner))


# ---- exports ----------------------------------------------------------------------------------------------------

def provenance(arch: str) -> dict:
    """What an export spec records of a user arch (absolute file + sha256, or module path; the class)."""
    return resolve(arch, "arch")[1]


def arch_from_spec(spec: dict) -> str:
    """The arch to rebuild an export with: the recorded absolute file (or module), never the config's relative path."""
    origin = spec["user_module"]
    if "file" in origin:
        path = origin["file"]
        if not os.path.isfile(path):
            raise CheckpointError(
                f"this export was trained with {origin['class']} from {path}, which no longer exists; put that file "
                f"back there (or correct \"user_module\".\"file\" in its spec.json) to load it")
        if origin.get("sha256") and _sha256(path) != origin["sha256"]:
            warnings.warn(f"{path} changed since this export was written (sha256 differs): the loaded weights may "
                          "not fit what the class now computes", stacklevel=2)
        return f"{path}:{origin['class']}"
    return f"{origin['module']}:{origin['class']}"


def same_arch(spec: dict, arch: str) -> bool:
    """Whether an export's spec holds `arch` (a user arch compares by where its class comes from)."""
    if not is_user_arch(arch) or "user_module" not in spec:
        return spec.get("arch") == arch
    try:
        mine = provenance(arch)
    except ConfigError:
        return False
    theirs = spec["user_module"]
    keys = ("file", "class") if "file" in mine else ("module", "class")
    return all(mine.get(k) == theirs.get(k) for k in keys)


def module_paths(intermediates) -> list:
    """Every submodule path ('a/b') whose `__call__` output `capture_intermediates=True` recorded."""
    out = []

    def walk(tree, prefix):
        for key, value in tree.items():
            if key == "__call__":
                if prefix:
                    out.append("/".join(prefix))
            elif isinstance(value, dict) or hasattr(value, "items"):
                walk(value, prefix + (key,))

    walk(intermediates or {}, ())
    return out


def captured_path(intermediates, path: str):
    """The last `__call__` output stored at module path `path`, or None."""
    node = intermediates or {}
    for part in path.split("/"):
        if not hasattr(node, "get") or part not in node:
            return None
        node = node[part]
    values = node.get("__call__") if hasattr(node, "get") else None
    return values[-1] if values else None


def path_filter(paths):
    """capture_intermediates filter: the `__call__` outputs of the modules at `paths`."""
    wanted = frozenset(paths)
    return lambda mdl, method_name: method_name == "__call__" and "/".join(mdl.path) in wanted
