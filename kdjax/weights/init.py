"""Resolve a sub-model's `init`: a kdjax export/converted directory, or a PaddleClas / torchvision file."""

import os

from kdjax.errors import CheckpointError, ConfigError
from kdjax.models.user_module import same_arch
from kdjax.weights.export_dir import is_export_dir, load_export, load_spec

PRETRAINED_SUFFIXES = (".pdparams", ".pth", ".pt")
_WHAT_INIT_TAKES = ("give a kdjax export directory (e.g. WORKDIR/export), a folder written by "
                    "`python -m kdjax.tools.convert`, or a .pdparams/.pth file")


def check_init_path(name: str, m, num_classes: int = 0):
    """Cheap pre-flight check of `models.<name>.init` (before any compute): the path exists, and an export's
    spec.json names the configured arch, its num_classes and the kwargs both sides set. Weight files
    (.pdparams/.pth) are only checked for existence here; their contents are checked when loaded."""
    path = os.path.expanduser(m.init)
    field = f"models.{name}.init"
    if not os.path.exists(path):
        raise ConfigError(field, f"{path!r} does not exist; {_WHAT_INIT_TAKES}")
    if path.endswith(PRETRAINED_SUFFIXES):
        return
    if not is_export_dir(path):
        raise ConfigError(field, f"{path!r} is neither a kdjax export directory (spec.json + variables/) nor a "
                                 f".pdparams/.pth file; {_WHAT_INIT_TAKES}")
    try:
        spec = load_spec(path)
    except CheckpointError as e:
        raise ConfigError(field, str(e)) from None
    if not same_arch(spec, m.arch):
        raise ConfigError(field, f"{path!r} holds a {spec.get('arch')!r} model but models.{name}.arch is "
                                 f"{m.arch!r}; point init at a {m.arch} checkpoint or change the arch")
    kwargs = dict(m.get("kwargs") or {})
    want = int(kwargs.get("num_classes") or num_classes or 0)
    have = int(spec.get("num_classes") or 0)
    if want and have and want != have:
        raise ConfigError(field, f"{path!r} holds a {m.arch} with {have} classes but models.{name} gets {want} "
                                 f"(data.num_classes / models.{name}.kwargs.num_classes); use a checkpoint trained "
                                 f"on these classes")
    theirs = dict(spec.get("kwargs") or {})
    differ = sorted(k for k in kwargs if k != "num_classes" and k in theirs and theirs[k] != kwargs[k])
    if differ:
        k = differ[0]
        raise ConfigError(field, f"{path!r} was built with {k}={theirs[k]!r} but models.{name}.kwargs.{k} is "
                                 f"{kwargs[k]!r}; make them match")


def load_init(name: str, sub, cache_dir: str):
    """Variables ({"params", "batch_stats"?}) for sub-model `name` from `sub.init`."""
    path = os.path.expanduser(sub.init)
    field = f"models.{name}.init"
    if not os.path.exists(path):
        raise ConfigError(field, f"{path!r} does not exist; {_WHAT_INIT_TAKES}")
    if path.endswith(PRETRAINED_SUFFIXES):
        cached = os.path.join(cache_dir, f"{name}_{os.path.basename(path)}")
        if is_export_dir(cached):
            variables, spec = load_export(cached)
        else:
            from kdjax.weights.export_dir import make_spec, save_export
            from kdjax.weights.pretrained import load_pretrained

            variables = load_pretrained(path, sub.arch, **sub.kwargs)
            save_export(cached, variables, make_spec(sub.arch, sub.kwargs, sub.kwargs.get("num_classes", 0),
                                                     [0, 0, 0], source=path))
            spec = {"arch": sub.arch}
    elif is_export_dir(path):
        variables, spec = load_export(path)
    else:
        raise ConfigError(field, f"{path!r} is neither a kdjax export directory (no spec.json) nor a "
                                 f".pdparams/.pth file")
    if not same_arch(spec, sub.arch):
        raise ConfigError(field, f"{path!r} holds a {spec.get('arch')!r} model but models.{name}.arch is "
                                 f"{sub.arch!r}; point init at a {sub.arch} checkpoint or change the arch")
    return variables


def check_variables_match(name: str, expected, loaded, path: str):
    """Same tree structure and shapes as a freshly initialised model, else one clear error."""
    import jax

    exp = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(loaded)}
    missing = [k for k in exp if k not in got]
    unexpected = [k for k in got if k not in exp]
    shapes = [f"{k}: checkpoint {got[k]} vs model {tuple(exp[k])}" for k in exp if k in got and tuple(exp[k]) != got[k]]
    if missing or unexpected or shapes:
        lines = [f"models.{name}.init={path!r} does not fit models.{name} (wrong arch, kwargs or num_classes?):"]
        lines += [f"  missing in checkpoint: {k}" for k in missing[:5]]
        lines += [f"  not in model: {k}" for k in unexpected[:5]]
        lines += [f"  shape mismatch {s}" for s in shapes[:5]]
        raise CheckpointError("\n".join(lines))
