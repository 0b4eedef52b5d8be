"""The weighted sum of all configured losses, one pure call per train step.

total = Σ weight · value over every entry and every pair/model of it. kdjax applies every weight,
also when the config has a single entry; PaddleClas' CombinedLoss has a shortcut there that returns
the first value of that single entry unweighted (see the golden `combined_ssld_single_dml_weight3`).
A PaddleClas config with one entry and weight != 1 therefore trains with a loss `weight` times
larger in kdjax; set the weight to 1.0 to reproduce it.
"""

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from kdjax.losses.config import parse_entries, term_names
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import Ctx
from kdjax.losses.validate import check_shapes


class CombinedLoss:
    """Built from the config by `build_losses`; holds no arrays, so it is safe to close over in jit."""

    def __init__(self, entries):
        self.entries = tuple(entries)
        self._names, self._param_keys = term_names(self.entries)

    @property
    def term_names(self) -> Tuple[str, ...]:
        """Names of the terms `__call__` returns, in order."""
        return tuple(n for e in self._names for unit in e for n in unit)

    def entry_term_names(self, index: int) -> Tuple[Tuple[str, ...], ...]:
        """Term names of config entry `index`: one tuple per model/pair (two names for rkd)."""
        return self._names[index]

    @property
    def needs_labels(self) -> bool:
        return any(e.spec.labels == "required" for e in self.entries)

    @property
    def needs_epoch(self) -> bool:
        return any(e.params.get("warmup_epochs") for e in self.entries)

    @property
    def needs_rng(self) -> bool:
        return any(e.type == "mgd" for e in self.entries)

    def _units(self):
        """(entry, unit, term names, param key, running unit index) for every term group."""
        k = 0
        for e, names, pkeys in zip(self.entries, self._names, self._param_keys):
            for unit, unit_names, pkey in zip(e.units, names, pkeys):
                yield e, unit, unit_names, pkey, k
                k += 1

    @staticmethod
    def _pair(outputs, unit):
        return outputs[unit[0]], (outputs[unit[1]] if len(unit) > 1 else None)

    def init(self, rng, outputs) -> Dict[str, Any]:
        """Learnable loss parameters (MGD generators, AFD heads) sized from `outputs`; {} if none.

        `outputs` = {model: {key: array or ShapeDtypeStruct}}; only shapes are read.
        """
        params = {}
        for e, unit, _, pkey, k in self._units():
            if pkey is not None:
                a, b = self._pair(outputs, unit)
                params[pkey] = e.spec.init(e, a, b, jax.random.fold_in(rng, k))
        return params

    def __call__(self, loss_params, outputs, labels, *, rng=None, epoch=None,
                 label_mask=None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
        """(total, terms): float32 scalars, each term already multiplied by its entry's weight.

        outputs: {model: {"logits": [N, C], feature: [N, H, W, C] or [N, D]}}; labels: int [N] or None;
        label_mask: [N], 0 for unlabeled rows (gt_ce averages over labeled rows only, dkd/wsl use the
        teacher's argmax there); rng: PRNG key (MGD masks); epoch: 1-based (DKD warm-up).
        """
        if self.needs_rng and rng is None:
            raise ValueError("this loss config contains 'mgd', which draws a fresh mask each call: pass rng=")
        terms: Dict[str, jax.Array] = {}
        total = jnp.zeros((), F32)
        for e, unit, names, pkey, k in self._units():
            a, b = self._pair(outputs, unit)
            if pkey is not None and pkey not in loss_params:
                raise KeyError(f"loss_params has no {pkey!r} (losses[{e.index}], {e.type}): pass what "
                               "CombinedLoss.init returned")
            ctx = Ctx(labels=labels, label_mask=label_mask, epoch=epoch,
                      rng=None if rng is None else jax.random.fold_in(rng, k),
                      params=None if pkey is None else loss_params[pkey])
            for name, value in zip(names, e.spec.compute(e, a, b, ctx)):
                value = f32(value) * F32(e.weight)
                terms[name] = value
                total = total + value
        return total, terms

    def param_key(self, index: int, unit) -> Optional[str]:
        """Key in `init`'s dict of entry `index`'s params for `unit` (a model pair); None if not learnable."""
        for e, u, _, pkey, _ in self._units():
            if e.index == index and u == tuple(unit):
                return pkey
        raise KeyError(f"losses[{index}] has no unit {tuple(unit)}")

    def shape_check(self, outputs) -> None:
        """Raise ConfigError for outputs that cannot be paired (works on jax.eval_shape results)."""
        check_shapes(self.entries, outputs)


def build_losses(loss_configs) -> CombinedLoss:
    """Parse `config.losses` (defaults filled, params checked) into a CombinedLoss."""
    return CombinedLoss(parse_entries(loss_configs))
