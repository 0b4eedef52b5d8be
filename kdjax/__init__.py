"""kdjax: knowledge distillation in JAX/Flax (PaddleClas DistillationModel semantics).

The helpers below make the README's commands (`python -m kdjax.main ...`, `python -m pytest -q tests`) after `bash install.sh` on a system
Python that refuses `pip install` (PEP 668): install.sh then puts everything into `<repo>/.venv`, and a command started
with a Python that lacks kdjax's dependencies re-runs itself, unchanged, with `.venv/bin/python` (saying so).

`python -m kdjax...` re-runs from `import kdjax`; `python -m pytest` from tests/conftest.py's pytest_configure (after
pytest's output capture is stopped, so the re-run prints to the terminal). KDJAX_VENV names another venv, and
KDJAX_NO_REEXEC=1 turns this off (it is set for the re-run, so it happens at most once).
"""

import importlib.util
import os
import sys
from typing import Optional

__version__ = "0.1.0"


def _started_as() -> str:
    """The module of `python -m MODULE ...`, else ''."""
    argv = list(getattr(sys, "orig_argv", []))
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""


def _venv_python() -> Optional[str]:
    """The python of the venv install.sh made, when this process should re-run there (else None)."""
    if os.environ.get("KDJAX_NO_REEXEC") or importlib.util.find_spec("jax") is not None:
        return None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout install.sh ran in
    venv = os.environ.get("KDJAX_VENV") or os.path.join(repo, ".venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(python) or os.path.realpath(sys.prefix) == os.path.realpath(venv):
        return None
    return python


def _reexec(python: str):
    venv = os.path.dirname(os.path.dirname(python))
    print(f"kdjax: this Python ({sys.executable}) lacks kdjax's packages; running the command with {python} "
          f"(the virtualenv install.sh made; `source {venv}/bin/activate` to use it directly)", file=sys.stderr,
          flush=True)
    os.environ["KDJAX_NO_REEXEC"] = "1"
    os.execv(python, [python] + list(sys.orig_argv[1:]))


def _reexec_kdjax_command():
    """From `import kdjax`: re-run `python -m kdjax...` in the venv when needed."""
    if _started_as().startswith("kdjax"):
        python = _venv_python()
        if python:
            _reexec(python)


_reexec_kdjax_command()  # after install.sh made .venv on a PEP 668 system: `python -m kdjax...` re-runs itself there
