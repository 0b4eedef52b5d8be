"""What each config `type` is: its inputs, parameters (with defaults and checks) and how to compute it.

A spec's `compute(entry, a, b, ctx)` gets the output dicts of the two models of one pair (`b` is None
for per-model losses such as gt_ce) and returns one value per name in `spec.parts`; a spec with a
`state_init` (CRD's memory bank) returns `(values, new_state)` instead and reads its state from `ctx.state`.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

import jax

from kdjax.losses import afd, crd, feature, hints, mgd, pefd, response

class _Required:
    """Marks a parameter without a default (shown as REQUIRED in LOSS_TYPES[...].defaults)."""

    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


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
    """What a config `type` needs (arity, labels, learnable params, keys) and how to compute it."""

    name: str
    summary: str
    arity: str  # "models": one term per model; "pairs": one term per [student, teacher] pair
    labels: str  # "required" | "optional" (teacher argmax without) | "unused"
    defaults: Mapping[str, Any]
    compute: Callable
    learnable: bool = False
    multi_key: bool = False  # reads lists `s_keys` / `t_keys` (AFD) instead of one `key`
    frozen_teacher: bool = False  # the second model of each pair must be frozen (SSLD)
    parts: Tuple[str, ...] = ("",)
    init: Optional[Callable] = None  # (entry, a, b, rng) -> params
    state_init: Optional[Callable] = None  # (entry, num_data, rng) -> non-gradient state; compute returns it updated
    needs_index: bool = False  # reads the batch's dataset indices (ctx.indices)
    needs_rng: bool = False  # draws random numbers each call (ctx.rng)


# --- parameter checks: each returns an error message, or None when the value is fine ---------------

def is_number(v) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(v):
    return None if is_number(v) else f"must be a number, got {v!r}"


def _positive(v):
    return None if is_number(v) and v > 0 else f"must be a number > 0, got {v!r}"


def _non_negative(v):
    return None if is_number(v) and v >= 0 else f"must be a number >= 0, got {v!r}"


def _positive_int(v):
    ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
    return None if ok else f"must be a positive integer, got {v!r}"


def _boolean(v):
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def _one_of(*choices):
    def check(v):
        return None if v in choices else f"must be one of {list(choices)}, got {v!r}"
    return check


def _epsilon(v):
    return None if v is None or is_number(v) else f"must be None or a number in (0, 1), got {v!r}"


def _unit_interval(v):
    return None if is_number(v) and 0 <= v <= 1 else f"must be a number in [0, 1], got {v!r}"


def _target_size(v):
    if v is None or (_positive_int(v) is None):
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(x is None or _positive_int(x) is None for x in v):
        return None
    return f"must be None, a positive int or a pair [h, w] of positive ints, got {v!r}"


PARAM_CHECKS = {
    "temperature": _positive, "alpha": _number, "beta": _number, "gamma": _number,
    "epsilon": _epsilon, "reduction": _one_of("mean", "sum"), "act": _one_of(None, "softmax", "sigmoid"),
    "sum_across_class_dim": _boolean, "eps": _positive, "use_target_as_gt": _boolean,
    "warmup_epochs": _non_negative, "mode": _one_of("l1", "l2", "smooth_l1"), "target_size": _target_size,
    "angle_weight": _number, "distance_weight": _number, "student_channels": _positive_int,
    "teacher_channels": _positive_int, "alpha_mgd": _number, "lambda_mgd": _unit_interval,
    "qk_dim": _positive_int, "logit_stand": _boolean, "multiplier": _number,
    "regressor": _one_of(*hints.REGRESSORS), "relu": _boolean, "p": _positive, "num_projectors": _positive_int,
    "feat_dim": _positive_int, "nce_k": _positive_int, "nce_t": _positive, "nce_m": _unit_interval,
}


# --- compute adapters -----------------------------------------------------------------------------

def _labels(entry, ctx):
    if ctx.labels is None:
        raise ValueError(f"losses[{entry.index}] ({entry.type}) needs labels; got labels=None")
    return ctx.labels


def _target(entry, t_logits, ctx):
    """DKD/WSL: labels where known, teacher argmax for None / unlabeled rows / use_target_as_gt."""
    if entry.params["use_target_as_gt"]:
        return None
    return response.target_or_teacher_argmax(ctx.labels, t_logits, ctx.label_mask)


def _gt_ce(e, a, b, ctx):
    p = e.params
    if ctx.soft_labels is not None:  # mixup / cutmix: soft-target CE
        return (response.soft_cross_entropy(a[e.s_key], ctx.soft_labels, p["epsilon"], p["reduction"],
                                            ctx.label_mask),)
    return (response.cross_entropy(a[e.s_key], _labels(e, ctx), p["epsilon"], p["reduction"], ctx.label_mask),)


def _stand(e, logits):
    """kd / dkd with logit_stand=True: z-scored logits (Sun et al., CVPR 2024) before the temperature."""
    return response.standardize_logits(logits) if e.params.get("logit_stand") else logits


def _soft_ce(e, a, b, ctx):
    return (response.soft_ce_loss(a[e.s_key], b[e.t_key]),)


def _kd(e, a, b, ctx):
    return (response.kl_div_loss(_stand(e, a[e.s_key]), _stand(e, b[e.t_key]), e.params["temperature"]),)


def _dml(e, a, b, ctx):
    p, t = e.params, b[e.t_key]
    if e.type == "ssld":
        t = jax.lax.stop_gradient(t)
    return (response.dml_loss(a[e.s_key], t, p["act"], p["sum_across_class_dim"], p["eps"]),)


def _dkd(e, a, b, ctx):
    p = e.params
    s, t = a[e.s_key], b[e.t_key]
    value = response.dkd_loss(_stand(e, s), _stand(e, t), _target(e, t, ctx), p["temperature"], p["alpha"],
                              p["beta"])
    if p["warmup_epochs"]:
        if ctx.epoch is None:
            raise ValueError(f"losses[{e.index}] (dkd) has warmup_epochs={p['warmup_epochs']}: pass epoch= "
                             "(1-based) to CombinedLoss.__call__")
        value = value * response.dkd_warmup_factor(ctx.epoch, p["warmup_epochs"])
    return (value,)


def _dist(e, a, b, ctx):
    return (response.dist_loss(a[e.s_key], b[e.t_key], e.params["beta"], e.params["gamma"]),)


def _wsl(e, a, b, ctx):
    t = b[e.t_key]
    return (response.wsl_loss(a[e.s_key], t, _target(e, t, ctx), e.params["temperature"]),)


def _distance(e, a, b, ctx):
    return (feature.distance_loss(a[e.s_key], b[e.t_key], e.params["mode"], e.params["act"]),)


def _rkd(e, a, b, ctx):
    p, s, t = e.params, a[e.s_key], b[e.t_key]
    return (p["angle_weight"] * feature.rkd_angle_loss(s, t, p["target_size"]),
            p["distance_weight"] * feature.rkd_distance_loss(s, t, p["target_size"]))


def _mgd(e, a, b, ctx):
    p = e.params
    return (mgd.mgd_loss(ctx.params, a[e.s_key], b[e.t_key], alpha_mgd=p["alpha_mgd"],
                         lambda_mgd=p["lambda_mgd"], rng=ctx.rng),)


def _mgd_init(e, a, b, rng):
    return mgd.mgd_init(rng, a[e.s_key], b[e.t_key])


def _afd(e, a, b, ctx):
    total, _ = afd.afd_loss(ctx.params, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys], e.params["qk_dim"])
    return (total,)


def _afd_init(e, a, b, rng):
    return afd.afd_init(rng, [a[k] for k in e.s_keys], [b[k] for k in e.t_keys], e.params["qk_dim"])


def _skd(e, a, b, ctx):
    p, t = e.params, b[e.t_key]
    return (response.skd_loss(a[e.s_key], t, _target(e, t, ctx), p["temperature"], p["multiplier"], p["alpha"]),)


def _fitnet(e, a, b, ctx):
    return (hints.fitnet_loss(ctx.params, a[e.s_key], b[e.t_key], e.params["regressor"], e.params["relu"]),)


def _fitnet_init(e, a, b, rng):
    return hints.fitnet_init(rng, a[e.s_key], b[e.t_key], e.params["regressor"], e.params["relu"])


def _at(e, a, b, ctx):
    return (hints.at_loss([a[k] for k in e.s_keys], [b[k] for k in e.t_keys], e.params["p"], e.params["beta"]),)


def _pefd(e, a, b, ctx):
    return (pefd.pefd_loss(ctx.params, a[e.s_key], b[e.t_key], e.params["num_projectors"]),)


def _pefd_init(e, a, b, rng):
    return pefd.pefd_init(rng, a[e.s_key], b[e.t_key], e.params["num_projectors"])


def _crd(e, a, b, ctx):
    if ctx.indices is None:
        raise ValueError(f"losses[{e.index}] (crd) needs the dataset index of every example: pass indices= "
                         "(the training pipeline adds batch['index'] when a loss needs it)")
    p = e.params
    value, state = crd.crd_loss(ctx.params, ctx.state, a[e.s_key], b[e.t_key], ctx.indices, rng=ctx.rng,
                                nce_k=p["nce_k"], nce_t=p["nce_t"], nce_m=p["nce_m"])
    return (value,), state


def _crd_init(e, a, b, rng):
    return crd.crd_init(rng, a[e.s_key], b[e.t_key], e.params["feat_dim"])


def _crd_state_init(e, num_data, rng):
    return crd.crd_state_init(rng, num_data, e.params["feat_dim"])


_DML_DEFAULTS = dict(act="softmax", sum_across_class_dim=False, eps=1e-12)

_SPECS = [
    LossSpec("gt_ce", "CE with ground-truth labels (DistillationGTCELoss)", "models", "required",
             dict(epsilon=None, reduction="mean"), _gt_ce),
    LossSpec("soft_ce", "CE against softmax(teacher) (DistillationCELoss)", "pairs", "unused", {}, _soft_ce),
    LossSpec("kd", "T²-scaled KL divergence, batchmean (DistillationKLDivLoss)", "pairs", "unused",
             dict(temperature=4.0, logit_stand=False), _kd),
    LossSpec("dml", "symmetric KL, both models trainable (DistillationDMLLoss)", "pairs", "unused",
             _DML_DEFAULTS, _dml),
    LossSpec("ssld", "DML semantics against a frozen teacher (SSLD)", "pairs", "unused",
             _DML_DEFAULTS, _dml, frozen_teacher=True),
    LossSpec("dkd", "decoupled KD: alpha·TCKD + beta·NCKD (DistillationDKDLoss)", "pairs", "optional",
             dict(temperature=1.0, alpha=1.0, beta=1.0, use_target_as_gt=False, warmup_epochs=0, logit_stand=False),
             _dkd),
    LossSpec("dist", "DIST inter/intra-class Pearson relation (DistillationDISTLoss)", "pairs", "unused",
             dict(beta=1.0, gamma=1.0), _dist),
    LossSpec("wsl", "weighted soft labels (DistillationWSLLoss)", "pairs", "optional",
             dict(temperature=2.0, use_target_as_gt=False), _wsl),
    LossSpec("distance", "l1 / l2 / smooth_l1 distance (DistillationDistanceLoss)", "pairs", "unused",
             dict(mode="l2", act=None), _distance),
    LossSpec("rkd", "RKD angle + distance relations (DistillationRKDLoss)", "pairs", "unused",
             dict(target_size=None, angle_weight=1.0, distance_weight=1.0), _rkd, parts=("angle", "distance")),
    LossSpec("mgd", "masked generative distillation (DistillationPairLoss + MGDLoss)", "pairs", "unused",
             dict(student_channels=REQUIRED, teacher_channels=REQUIRED, alpha_mgd=1.756, lambda_mgd=0.15),
             _mgd, learnable=True, init=_mgd_init, needs_rng=True),
    LossSpec("afd", "attention-based feature distillation (AFDLoss + LinearTransform heads)", "pairs", "unused",
             dict(qk_dim=128), _afd, learnable=True, multi_key=True, init=_afd_init),
    LossSpec("skd", "spherical KD: layer-normed logits ×multiplier, α·KD + (1−α)·CE (SKDLoss)", "pairs",
             "optional", dict(temperature=1.0, multiplier=2.0, alpha=0.9, use_target_as_gt=False), _skd),
    LossSpec("fitnet", "FitNet hint: MSE of regressor(student map) vs teacher map (Romero et al.)", "pairs",
             "unused", dict(regressor="conv", relu=True), _fitnet, learnable=True, init=_fitnet_init),
    LossSpec("at", "attention transfer over layer pairs, beta/2 · Σ MSE of normalised maps (Zagoruyko et al.)",
             "pairs", "unused", dict(p=2.0, beta=1000.0), _at, multi_key=True),
    LossSpec("pefd", "projector-ensemble feature distillation, 1 − cos (PEFDLoss)", "pairs", "unused",
             dict(student_channels=REQUIRED, teacher_channels=REQUIRED, num_projectors=3), _pefd,
             learnable=True, init=_pefd_init),
    LossSpec("crd", "contrastive representation distillation with memory banks (Tian et al.)", "pairs", "unused",
             dict(feat_dim=128, nce_k=16384, nce_t=0.07, nce_m=0.5), _crd, learnable=True, init=_crd_init,
             state_init=_crd_state_init, needs_index=True, needs_rng=True),
]

LOSS_TYPES = {spec.name: spec for spec in _SPECS}
