"""Config files are passed by path (`--config=configs/dkd.py[:preset]`). When kdjax is installed as a package
(`pip install .`), the files of the repository's configs/ are installed too (package `kdjax_configs`): a
`configs/<name>.py` that does not exist relative to the current directory is taken from there, so the README's
commands work from any directory. A path that exists is always used as given."""

import importlib.util
import os
from typing import List, Optional


def installed_configs_dir() -> Optional[str]:
    try:
        spec = importlib.util.find_spec("kdjax_configs")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


def resolve(value: str) -> str:
    """`configs/x.py[:arg]` → the installed copy when the path does not exist here; anything else unchanged."""
    path, sep, arg = value.partition(":")
    if os.path.exists(path) or os.path.dirname(os.path.normpath(path)) != "configs":
        return value
    directory = installed_configs_dir()
    if directory is None:
        return value
    candidate = os.path.join(directory, os.path.basename(path))
    return candidate + sep + arg if os.path.isfile(candidate) else value


def resolve_argv(argv: List[str], flag: str = "config") -> List[str]:
    """argv with `--config=PATH` / `--config PATH` resolved by `resolve`."""
    out, i = list(argv), 0
    while i < len(out):
        a = out[i]
        if a.startswith(f"--{flag}="):
            out[i] = f"--{flag}=" + resolve(a.split("=", 1)[1])
        elif a == f"--{flag}" and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
            i += 1
        i += 1
    return out
