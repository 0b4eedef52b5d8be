"""The weighted sum of all configured losses, one pure call per train step.

total = Σ weight · value over every entry and every pair/model of it. kdjax applies every weight,
also when the config has a single entry; PaddleClas' CombinedLoss has a shortcut there that returns
the first value of that single entry unweighted (see the golden `combined_ssld_single_dml_weight3`).
A PaddleClas config with one entry and weight != 1 therefore trains with a loss `weight` times
larger in kdjax; set the weight to 1.0 to reproduce it.

Loss state: a loss may keep non-gradient state between steps (CRD's memory banks). `init_state(rng,
num_data)` creates it ({} when no loss has any); `apply(params, state, ...)` returns it updated next to
(total, terms); the train step keeps it in `TrainState.loss_state`, so it is checkpointed with the rest.
"""

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from kdjax.losses.entries import check_shapes, parse_entries, term_names
from kdjax.losses.numerics import F32, f32
from kdjax.errors import ConfigError
from kdjax.losses.registry import Ctx, has_state


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
        return any(e.spec.needs_epoch or e.params.get("warmup_epochs") for e in self.entries)

    @property
    def views(self) -> Tuple[str, ...]:
        """Extra input views some loss reads (LossSpec.views), in a fixed order; () for most configs."""
        return tuple(sorted({v for e in self.entries for v in e.spec.views}))

    @property
    def needs_rng(self) -> bool:
        return any(e.spec.needs_rng for e in self.entries)

    @property
    def needs_index(self) -> bool:
        """Some loss reads the dataset index of each example (CRD): batches need an "index" key."""
        return any(e.spec.needs_index for e in self.entries)

    @property
    def stateful(self) -> bool:
        """Some loss keeps non-gradient state between steps (see `init_state` / `apply`)."""
        return any(has_state(e.spec) for e in self.entries)

    @property
    def task_term_names(self) -> Tuple[str, ...]:
        """Terms of task losses (LossSpec.task, e.g. gt_ce); every other term is a distillation term (DOT)."""
        return tuple(n for e, names in zip(self.entries, self._names) if e.spec.task for unit in names for n in unit)

    @property
    def reads_teachers(self) -> bool:
        """Some loss computes its state from a frozen teacher's variables (`init_state(..., variables)`)."""
        return any(e.spec.teacher_state is not None for e in self.entries)

    def check_teachers(self, variables, outputs=None) -> None:
        """ConfigError for a teacher a loss cannot read its state from (OFD: the BatchNorms its margins come from).

        variables: {model: {"params": ..., "batch_stats": ...}} of arrays or jax.eval_shape structs; outputs (as for
        shape_check), when given, lets the loss match them against the features it reads."""
        for e, unit, _, _, _ in self._units():
            if e.spec.teacher_check is not None:
                if unit[1] not in variables:
                    raise ConfigError(e.units_field, f"'{e.type}' reads the variables of {unit[1]!r}, which is not "
                                      "a frozen model")
                problem = e.spec.teacher_check(e, variables[unit[1]], (outputs or {}).get(unit[1]))
                if problem:
                    raise ConfigError(f"{e.field}.{problem[0]}", f"'{e.type}' on {'-'.join(unit)}: {problem[1]}")

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
            if pkey is not None and e.spec.init is not None:
                a, b = self._pair(outputs, unit)
                params[pkey] = e.spec.init(e, a, b, jax.random.fold_in(rng, k))
        return params

    def init_state(self, rng, num_data: int, variables=None) -> Dict[str, Any]:
        """Non-gradient loss state (CRD memory banks of `num_data` rows, the training set size; OFD margins from
        `variables` = {frozen model: its variables}); {} if none."""
        if self.reads_teachers:
            if variables is None:
                raise ValueError("this loss config computes state from frozen teachers (ofd): pass variables="
                                 "{name: {'params': ..., 'batch_stats': ...}} of the frozen models")
            self.check_teachers(variables)
        state = {}
        for e, unit, _, pkey, k in self._units():
            if e.spec.state_init is not None:
                state[pkey] = e.spec.state_init(e, int(num_data), jax.random.fold_in(rng, k))
            elif e.spec.teacher_state is not None:
                state[pkey] = e.spec.teacher_state(e, variables[unit[1]])
        return state

    def __call__(self, loss_params, outputs, labels, *, rng=None, epoch=None, label_mask=None,
                 soft_labels=None, loss_state=None, indices=None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
        """(total, terms): float32 scalars, each term already multiplied by its entry's weight.

        outputs: {model: {"logits": [N, C], feature: [N, H, W, C] or [N, D]}}; labels: int [N] or None;
        label_mask: [N], 0 for unlabeled rows (gt_ce averages over labeled rows only, dkd/wsl use the
        teacher's argmax there); rng: PRNG key (MGD masks, CRD negatives); epoch: 1-based (DKD warm-up);
        soft_labels: float [N, C] mixup/cutmix targets (gt_ce becomes soft-target CE); loss_state / indices:
        what a stateful loss (CRD) reads, its update is dropped here: use `apply` to keep it.
        """
        total, terms, _ = self.apply(loss_params, loss_state, outputs, labels, rng=rng, epoch=epoch,
                                     label_mask=label_mask, soft_labels=soft_labels, indices=indices)
        return total, terms

    def apply(self, loss_params, loss_state, outputs, labels, *, rng=None, epoch=None, label_mask=None,
              soft_labels=None, indices=None) -> Tuple[jax.Array, Dict[str, jax.Array], Dict[str, Any]]:
        """(total, terms, new loss_state): `__call__` plus the updated state of stateful losses (CRD).

        loss_state: what `init_state` (or the previous call) returned; indices: int [N], each example's index
        in the training set (CRD's memory rows).
        """
        if self.needs_rng and rng is None:
            kinds = sorted({e.type for e in self.entries if e.spec.needs_rng})
            raise ValueError(f"this loss config contains {kinds}, which draw fresh random numbers each call "
                             "(MGD masks, CRD negatives): pass rng=")
        if self.stateful and loss_state is None:
            raise ValueError("this loss config keeps state between steps (crd): pass loss_state= "
                             "(CombinedLoss.init_state, then what apply returned)")
        terms: Dict[str, jax.Array] = {}
        new_state: Dict[str, Any] = {}
        total = jnp.zeros((), F32)
        for e, unit, names, pkey, k in self._units():
            a, b = self._pair(outputs, unit)
            if e.spec.learnable and pkey not in loss_params:
                raise KeyError(f"loss_params has no {pkey!r} (losses[{e.index}], {e.type}): pass what "
                               "CombinedLoss.init returned")
            stateful = has_state(e.spec)
            if stateful and pkey not in loss_state:
                raise KeyError(f"loss_state has no {pkey!r} (losses[{e.index}], {e.type}): pass what "
                               "CombinedLoss.init_state returned")
            ctx = Ctx(labels=labels, label_mask=label_mask, epoch=epoch,
                      rng=None if rng is None else jax.random.fold_in(rng, k),
                      params=loss_params[pkey] if e.spec.learnable else None, soft_labels=soft_labels,
                      state=loss_state[pkey] if stateful else None, indices=indices)
            values = e.spec.compute(e, a, b, ctx)
            if e.spec.state_init is not None:
                values, new_state[pkey] = values
            elif stateful:  # state read from the teacher once: carried unchanged
                new_state[pkey] = ctx.state
            for name, value in zip(names, values):
                value = f32(value) * F32(e.weight)
                terms[name] = value
                total = total + value
        return total, terms, new_state

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
