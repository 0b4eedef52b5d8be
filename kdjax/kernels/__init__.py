"""Which implementation of BatchNorm's training pass and of the convolution's backward pass the model zoo uses.

Three sets today, chosen per backend at trace time (`config.kernels`):

  xla        flax.linen.BatchNorm's formulation differentiated by JAX, lax.conv_general_dilated with XLA's own VJP:
             what cuDNN and the TPU compiler are given to optimise (GPU, TPU, and CPU on request).
  cpu_tuned  the zoo BatchNorm's hand-written backward pass with column-sum reductions (kdjax/models/layers.py) and
             kdjax/kernels/conv.py's VJP (phase-split strided input gradient, weight gradient released with the
             input gradient): measured faster on XLA:CPU only (benchmarks/README.md, ablation).
  onednn     cpu_tuned with every convolution the oneDNN FFI kernels can take routed through them
             (kdjax/kernels/onednn; XLA:CPU only, built by install.sh): measured 1.23x cpu_tuned's step on the
             README's CPU. Where they are not built, or on another backend, one warning line and cpu_tuned's
             convolutions (the same values to float rounding).
  auto       cpu_tuned on the CPU backend, xla elsewhere (the default). Not onednn: whether that optional library
             was built must not change which arithmetic a config runs.

All compute the same values to float rounding (tests/unit/test_kernels.py, tests/unit/test_onednn_conv.py). A new
implementation is one more entry of `CHOICES` and, if it should be the default somewhere, of `AUTO`.

The choice reaches the layers through `use(...)`, a context that `DistillationModel.apply` enters around every
sub-model call, so it is fixed when the step is traced; `current()` outside any such context resolves `auto` for
the default backend. `KDJAX_FAST_BN` / `KDJAX_FAST_CONV` (0 or 1) override the BatchNorm / convolution part of
whatever was chosen, for ablations (benchmarks/ablation.sh); KDJAX_CONV=onednn turns the convolution part of any
choice into oneDNN's (benchmarks/compare.sh), as `kernels='onednn'` does in a config.
"""

import contextlib
import contextvars
import dataclasses
import os
from typing import Optional

AUTO_NAME = "auto"


@dataclasses.dataclass(frozen=True)
class Kernels:
    name: str
    batch_norm: str   # "autodiff": flax's formulation, JAX's VJP | "custom_vjp": layers.py's hand-written pass
    conv: str         # "xla": lax.conv_general_dilated's VJP | "custom_vjp": kernels/conv.py | "onednn": FFI calls


CHOICES = {
    "xla": Kernels("xla", batch_norm="autodiff", conv="xla"),
    "cpu_tuned": Kernels("cpu_tuned", batch_norm="custom_vjp", conv="custom_vjp"),
    "onednn": Kernels("onednn", batch_norm="custom_vjp", conv="onednn"),
}
AUTO = {"cpu": "cpu_tuned"}  # backend -> choice; any other backend (gpu, tpu, ...) gets "xla"
NAMES = (AUTO_NAME,) + tuple(CHOICES)


def check(value) -> Optional[str]:
    """The `config.kernels` field check: an error message, or None."""
    return None if value in NAMES else f"must be one of {list(NAMES)}, got {value!r}"


def _override(kernels: Kernels) -> Kernels:
    env = {"batch_norm": ("KDJAX_FAST_BN", "custom_vjp", "autodiff"), "conv": ("KDJAX_FAST_CONV", "custom_vjp", "xla")}
    changes = {}
    for part, (var, fast, plain) in env.items():
        value = os.environ.get(var)
        if value in ("0", "1"):
            changes[part] = fast if value == "1" else plain
    if os.environ.get("KDJAX_CONV") == "onednn":
        changes["conv"] = "onednn"
    return dataclasses.replace(kernels, **changes) if changes else kernels


def select(choice: str = AUTO_NAME, backend: Optional[str] = None) -> Kernels:
    """The kernels `choice` ('auto', 'xla', 'cpu_tuned', 'onednn') means on `backend` (default: JAX's default backend)."""
    problem = check(choice)
    if problem:
        raise ValueError(f"kernels {problem}")
    if choice == AUTO_NAME:
        if backend is None:
            import jax

            backend = jax.default_backend()
        choice = AUTO.get(backend, "xla")
    return _override(CHOICES[choice])


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("kdjax_kernels", default=None)


@contextlib.contextmanager
def use(choice="auto", backend: Optional[str] = None):
    """Within this context the zoo's layers trace with `select(choice, backend)` (or a Kernels given as is)."""
    kernels = choice if isinstance(choice, Kernels) else select(choice, backend)
    token = _CURRENT.set(kernels)
    try:
        yield kernels
    finally:
        _CURRENT.reset(token)


def current() -> Kernels:
    """The kernels in effect where a layer is being traced."""
    kernels = _CURRENT.get()
    return kernels if kernels is not None else select(AUTO_NAME)
