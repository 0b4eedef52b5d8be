"""The contract of a loss type: one `LossSpec`, registered by the module that holds the loss's maths.

A loss module ends with `register_loss(LossSpec(...))`. The spec says what the config entry reads (one model or a
[student, teacher] pair, which outputs, labels), its hyper-parameters with defaults and their checks, what shapes it
can pair, whether it has learnable parameters or state, and `compute(entry, a, b, ctx)`: the values of one unit
(`a`, `b`: the output dicts of the unit's two models; `b` is None for per-model losses such as gt_ce), one value per
name in `parts`. A spec with a `state_init` returns `(values, new_state)` and reads its state from `ctx.state`.

`kdjax.losses` imports every module of the package, so adding a loss type is adding its file (docs/extending.md).
"""

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union


class _Required:
    """Marks a parameter without a default (shown as REQUIRED in the spec's defaults)."""

    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()
Check = Callable[[Any], Optional[str]]  # a parameter value -> an error message, or None when it is fine


@dataclass(frozen=True)
class Ctx:
    """Per-call inputs shared by all entries."""

    labels: Any
    label_mask: Any
    rng: Any
    epoch: Any
    params: Any = None  # this unit's learnable parameters (MGD/AFD)
    soft_labels: Any = None  # float [N, C] mixup/cutmix targets: gt_ce uses them instead of labels
    state: Any = None  # this unit's non-gradient state (CRD memory bank), see LossSpec.state_init
    indices: Any = None  # int [N] dataset indices of the batch's examples (CRD)


@dataclass(frozen=True)
class LossSpec:
    """What a config `type` needs and how to compute it."""

    name: str
    summary: str  # one line: what it computes, and its PaddleClas / reference counterpart
    paper: str  # the method it implements, e.g. "DKD: Zhao et al., CVPR 2022"
    arity: str  # "models": one term per model; "pairs": one term per [student, teacher] pair
    labels: str  # "required" | "optional" (teacher argmax without) | "unused"
    defaults: Mapping[str, Any]
    compute: Callable
    checks: Mapping[str, Check] = field(default_factory=dict)  # per hyper-parameter
    # (entry, student shape, teacher shape or None) -> why they cannot be used, or None; multi_key losses get lists
    shape_check: Optional[Callable] = None
    entry_check: Optional[Callable] = None  # (entry) -> (field, message) of a cross-field problem, or None
    # per-sample separable: the value is a mean over the batch of per-sample terms, so a batch split into
    # micro-batches gives the same gradient (train.grad_accum_steps); False for losses relating samples of a batch
    # (train.grad_accum_steps > 1 is then refused). A callable `(entry, batch: BatchKind) -> bool` decides per entry
    # (from its hyper-parameters) and per kind of batch (e.g. SSLD's label mask). Losses that draw random numbers
    # (MGD masks) are separable in distribution: each micro-batch draws its own. Every loss module declares it;
    # None (undeclared) counts as not separable, so an undeclared loss is refused under accumulation, never wrong.
    separable: Union[bool, Callable, None] = None
    learnable: bool = False
    multi_key: bool = False  # reads lists `s_keys` / `t_keys` (AFD) instead of one `key`
    frozen_teacher: bool = False  # the second model of each pair must be frozen (SSLD)
    parts: Tuple[str, ...] = ("",)
    init: Optional[Callable] = None  # (entry, a, b, rng) -> params
    state_init: Optional[Callable] = None  # (entry, num_data, rng) -> non-gradient state; compute returns it updated
    needs_index: bool = False  # reads the batch's dataset indices (ctx.indices)
    needs_rng: bool = False  # draws random numbers each call (ctx.rng)
    needs_epoch: bool = False  # reads ctx.epoch (1-based) every call (CTKD's curriculum)
    # extra input views the loss reads besides the batch's "image" (e.g. ("strong",) for MLKD): the pipeline then
    # emits batch["image_<view>"] (a differently augmented copy of the same records), every model runs on each
    # view, and the loss finds model outputs of view v under "<v>/<key>" (e.g. a["strong/logits"]); see
    # DistillationModel.apply_views and kdjax/data/strong_augment.py
    views: Tuple[str, ...] = ()
    # a task loss (ground truth), not a distillation one: optim.name='dot' gives the two kinds separate momenta
    task: bool = False
    # non-gradient state computed once, at init, from the frozen teacher's variables ({"params", "batch_stats"};
    # OFD's margins from its BatchNorms): (entry, teacher variables) -> state, read as ctx.state (compute returns
    # values only). Needs frozen_teacher. `teacher_check(entry, variable shapes, teacher output shapes or None)`
    # -> (field, message) or None refuses unusable teachers before any compute.
    teacher_state: Optional[Callable] = None
    teacher_check: Optional[Callable] = None


def has_state(spec: LossSpec) -> bool:
    """Whether the loss keeps non-gradient state in the train state (state_init or teacher_state)."""
    return spec.state_init is not None or spec.teacher_state is not None


@dataclass(frozen=True)
class BatchKind:
    """What the training batches carry besides images and labels, as far as separability depends on it."""

    label_mask: bool = False  # SSLD: rows without a label (data.unlabeled_list / data.unlabeled_split)


def is_separable(entry, batch: BatchKind = BatchKind()) -> bool:
    """Whether config entry `entry` is a mean of per-sample terms on such batches (see LossSpec.separable)."""
    sep = entry.spec.separable
    if sep is None:
        return False
    if not callable(sep):
        return bool(sep)
    try:
        takes_batch = len(inspect.signature(sep).parameters) >= 2
    except (TypeError, ValueError):
        takes_batch = True
    return bool(sep(entry, batch) if takes_batch else sep(entry))


_LOSS_TYPES: Dict[str, LossSpec] = {}


def register_loss(spec: LossSpec) -> LossSpec:
    """Make `spec` available as config type `spec.name`."""
    if spec.name in _LOSS_TYPES:
        raise ValueError(f"loss type {spec.name!r} registered twice")
    if spec.teacher_state is not None and not spec.frozen_teacher:
        raise ValueError(f"loss type {spec.name!r}: teacher_state reads the teacher once, so it needs frozen_teacher")
    unknown = sorted(set(spec.checks) - set(spec.defaults))
    if unknown:
        raise ValueError(f"loss type {spec.name!r} checks parameters it does not have: {unknown}")
    _LOSS_TYPES[spec.name] = spec
    return spec


def loss_types() -> Dict[str, LossSpec]:
    """Every registered loss type (importing kdjax.losses registers all of them)."""
    return dict(_LOSS_TYPES)


# --- parameter checks: each returns an error message, or None when the value is fine ---------------

def is_number(v) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(v):
    return None if is_number(v) else f"must be a finite number, got {v!r}"


def positive(v):
    return None if is_number(v) and v > 0 else f"must be a finite number > 0, got {v!r}"


def non_negative(v):
    return None if is_number(v) and v >= 0 else f"must be a finite number >= 0, got {v!r}"


def positive_int(v):
    ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
    return None if ok else f"must be a positive integer, got {v!r}"


def boolean(v):
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def one_of(*choices):
    def check(v):
        return None if v in choices else f"must be one of {list(choices)}, got {v!r}"
    return check


def unit_interval(v):
    return None if is_number(v) and 0 <= v <= 1 else f"must be a number in [0, 1], got {v!r}"


def optional_unit_open(v):
    """None, or a smoothing ε; like PaddleClas, a value outside (0, 1) means no smoothing."""
    return None if v is None or is_number(v) else f"must be None or a number in (0, 1), got {v!r}"


# --- shape checks shared by several loss types ---------------------------------------------------------

def same_shape(entry, s, t) -> Optional[str]:
    """For losses without an alignment layer: student and teacher outputs of one shape."""
    if s != t:
        return (f"student {list(s)} and teacher {list(t)} differ in shape and '{entry.type}' has no alignment "
                "layer; pick keys with equal shapes (or a loss that aligns them, e.g. 'mgd' or 'fitnet')")
    return None


def class_logits(entry, s, t=None) -> Optional[str]:
    """[N, C] logits with C >= 2 (and equal shapes when a teacher is given)."""
    if t is not None and same_shape(entry, s, t):
        return same_shape(entry, s, t)
    if len(s) != 2 or s[-1] < 2:
        return f"needs [N, C] logits with C >= 2, got {list(s)}"
    return None
