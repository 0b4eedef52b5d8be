"""kdjax: knowledge distillation in JAX/Flax (PaddleClas DistillationModel semantics)."""

__version__ = "0.1.0"

from kdjax._venv import reexec_kdjax_command as _reexec  # noqa: E402

_reexec()  # after install.sh made .venv on a PEP 668 system: `python -m kdjax...` re-runs itself there
