"""Resolve a sub-model's `init`: a kdjax export/converted directory, or a PaddleClas / torchvision file."""

import os

from kdjax.errors import CheckpointError, ConfigError
from kdjax.export import is_export_dir, load_export

PRETRAINED_SUFFIXES = (".pdparams", ".pth", ".pt")


def load_init(name: str, sub, cache_dir: str):
    """Variables ({"params", "batch_stats"?}) for sub-model `name` from `sub.init`."""
    path = os.path.expanduser(sub.init)
    field = f"models.{name}.init"
    if not os.path.exists(path):
        raise ConfigError(field, f"{path!r} does not exist; give a kdjax export directory (e.g. WORKDIR/export), a "
                                 f"folder written by `python -m kdjax.convert`, or a .pdparams/.pth file")
    if path.endswith(PRETRAINED_SUFFIXES):
        cached = os.path.join(cache_dir, f"{name}_{os.path.basename(path)}")
        if is_export_dir(cached):
            variables, spec = load_export(cached)
        else:
            from kdjax.export import make_spec, save_export
            from kdjax.pretrained import load_pretrained

            variables = load_pretrained(path, sub.arch, **sub.kwargs)
            save_export(cached, variables, make_spec(sub.arch, sub.kwargs, sub.kwargs.get("num_classes", 0),
                                                     [0, 0, 0], source=path))
            spec = {"arch": sub.arch}
    elif is_export_dir(path):
        variables, spec = load_export(path)
    else:
        raise ConfigError(field, f"{path!r} is neither a kdjax export directory (no spec.json) nor a "
                                 f".pdparams/.pth file")
    if spec.get("arch") != sub.arch:
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
