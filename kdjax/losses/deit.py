"""`deit`: DeiT's hard / soft distillation through a distillation token (Touvron et al., ICML 2021), exactly as
facebookresearch/deit `losses.py` DistillationLoss (../shared/golden_methods/LOSSES.md §15).

The student gives two heads: the class head (base criterion vs the labels) and the distillation head (vs a frozen
teacher's logits, usually a CNN's):
  base = CE(cls, y)                                        (soft-target CE under mixup/cutmix, as DeiT's
                                                            SoftTargetCrossEntropy; `epsilon` = label smoothing)
  'none': L = base                                         (alpha is not applied, as in the reference)
  'soft': KD = τ² · Σ_{n,c} softmax(t/τ)·(log_softmax(t/τ) − log_softmax(dist/τ)) / (N·C)
          — the reference divides by `numel` = N·C, not by N
  'hard': KD = CE(dist, argmax_c t)
  L = (1 − alpha) · base + alpha · KD
The teacher gets no gradient (it runs under no_grad in DeiT). The two summands are logged as separate terms,
`deit/<Student>-<Teacher>/base` and `.../distillation`; their sum is DeiT's loss.

Config: `loss_entry("deit", 1.0, pairs=[["Student", "Teacher"]], s_keys=["logits", "logits_dist"],
t_keys=["logits"], distillation_type="hard", alpha=0.5, tau=1.0)`. `s_keys` = [class head, distillation head]: a
distilled DeiT (`deit_*_distilled_*`, `ViT(distilled=True)`) returns its class head as `logits` in training and
records `logits_dist` (capture it); for a ViT without a distillation token give `["logits", "logits"]`, which is
what DeiT does for such a model (both terms on the one head). Use no separate gt_ce entry: the base CE is part
of this loss.
"""

import jax.numpy as jnp

from kdjax.losses.gt_ce import cross_entropy, soft_cross_entropy
from kdjax.losses.logit_ops import kl_logits, teacher_side
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import LossSpec, one_of, optional_unit_open, positive, register_loss, unit_interval

TYPES = ("none", "soft", "hard")


def deit_parts(cls_logits, dist_logits, teacher_logits, labels, distillation_type: str = "hard",
               alpha: float = 0.5, tau: float = 1.0, epsilon=None, label_mask=None, soft_labels=None):
    """((1 − α)·base, α·KD) of DeiT's DistillationLoss; (base, 0) for distillation_type='none'."""
    if distillation_type not in TYPES:
        raise ValueError(f"distillation_type must be one of {TYPES}, got {distillation_type!r}")
    if soft_labels is not None:
        base = soft_cross_entropy(cls_logits, soft_labels, epsilon, "mean", label_mask)
    else:
        base = cross_entropy(cls_logits, labels, epsilon, "mean", label_mask)
    if distillation_type == "none":
        return base, jnp.zeros((), F32)
    s, t = f32(dist_logits), teacher_side(teacher_logits, False)
    if distillation_type == "soft":
        temp = float(tau)
        kd = kl_logits(t / temp, s / temp) * (temp * temp) / s.size
    else:
        kd = cross_entropy(s, jnp.argmax(t, axis=-1))
    return (1.0 - alpha) * base, alpha * kd


def deit_loss(cls_logits, dist_logits, teacher_logits, labels, distillation_type: str = "hard",
              alpha: float = 0.5, tau: float = 1.0, epsilon=None):
    """DistillationLoss(CrossEntropyLoss(), teacher, distillation_type, alpha, tau)(x, (cls, dist), labels)."""
    base, kd = deit_parts(cls_logits, dist_logits, teacher_logits, labels, distillation_type, alpha, tau, epsilon)
    return base + kd


def _compute(e, a, b, ctx):
    if ctx.labels is None and ctx.soft_labels is None:
        raise ValueError(f"losses[{e.index}] (deit) needs labels for its base CE; got labels=None")
    p = e.params
    cls_key, dist_key = e.s_keys
    return deit_parts(a[cls_key], a[dist_key], b[e.t_keys[0]], ctx.labels, p["distillation_type"], p["alpha"],
                      p["tau"], p["epsilon"], ctx.label_mask, ctx.soft_labels)


_KEYS_HINT = ("s_keys=['logits', 'logits_dist'] (class head, distillation head of a distilled DeiT; "
              "['logits', 'logits'] for a ViT without a distillation token) and t_keys=['logits']")


def _entry(e):
    if len(e.s_keys) != 2:
        return "s_keys", f"'deit' reads two student outputs, got {list(e.s_keys)}: give {_KEYS_HINT}"
    if len(e.t_keys) != 1:
        return "t_keys", f"'deit' reads one teacher output, got {list(e.t_keys)}: give {_KEYS_HINT}"
    return None


def _shapes(e, s, t):
    if any(len(x) != 2 for x in list(s) + list(t)):
        return f"needs [N, C] logits, got student {[list(x) for x in s]} and teacher {[list(x) for x in t]}"
    if not (s[0] == s[1] == t[0]):
        return (f"the class head {list(s[0])}, distillation head {list(s[1])} and teacher {list(t[0])} must have one "
                "shape (same classes)")
    if s[0][-1] < 2:
        return f"needs C >= 2 classes, got {list(s[0])}"
    return None


register_loss(LossSpec(
    "deit", "DeiT: (1-alpha)·CE(class head) + alpha·hard/soft KD(distillation head vs teacher) (DistillationLoss)",
    "DeiT: Touvron et al., ICML 2021", "pairs", "required",
    dict(distillation_type="hard", alpha=0.5, tau=1.0, epsilon=None), _compute,
    checks=dict(distillation_type=one_of(*TYPES), alpha=unit_interval, tau=positive, epsilon=optional_unit_open),
    entry_check=_entry, shape_check=_shapes, multi_key=True, frozen_teacher=True, parts=("base", "distillation"),
    # separable: CE means over samples, soft KD a sum over N·C / (N·C); not on SSLD batches, where the base CE is a
    # mean over the labeled rows only (a count that differs between micro-batches)
    separable=lambda e, batch: not batch.label_mask))
