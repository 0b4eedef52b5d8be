"""The one place that knows how Flax `sow` stores captured features.

Models call `record(self, name, x)` at stable, PaddleClas-style names (`blocks[3]`, `blocks5`,
`avg_pool`). Everyone else reads `{name: array}` through `collect`.
"""

from typing import Any, Mapping

import flax.linen as nn

COLLECTION = "intermediates"


def _keep_last(_, new):
    return new


def _empty():
    return None


def record(module: nn.Module, name: str, value) -> None:
    """Store `value` under `name`; a second write to the same name replaces the first."""
    module.sow(COLLECTION, name, value, reduce_fn=_keep_last, init_fn=_empty)


def collect(mutated: Mapping[str, Any]) -> dict:
    """Flat `{name: array}` from the variables returned by `apply(..., mutable=[COLLECTION])`."""
    captured = mutated.get(COLLECTION, {}) if mutated else {}
    out = {}
    for name, value in captured.items():
        if isinstance(value, tuple):  # default sow semantics, should a model use plain self.sow
            value = value[-1]
        if isinstance(value, Mapping):  # sown inside a submodule: not a stable top-level name
            continue
        out[name] = value
    return out
