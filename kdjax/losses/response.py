"""Logit (response-based) losses as pure JAX functions, exact to PaddleClas / mdistiller.

Every function casts its inputs to float32 first, so bf16 activations give float32 losses. Logs of
probabilities come from log-softmax or log-sum-exp wherever a probability can underflow, so ±30
logits and saturated one-hot teachers stay finite: a probability that underflows to 0 contributes
exactly 0, as in the references. Softmax gradients use numerics.softmax (accurate for saturated rows).
Definitions and quirks: ../shared/golden/LOSSES.md.
"""

import math
from typing import Optional

import jax
import jax.numpy as jnp

from kdjax.losses.numerics import F32, f32, safe_norm, softmax


def flat_labels(labels):
    """PaddleClas feeds labels as [N, 1]; everything here wants [N] integers."""
    labels = jnp.asarray(labels)
    return labels.reshape(labels.shape[0]) if labels.ndim == 2 and labels.shape[1] == 1 else labels


def _masked(reduce, values, label_mask):
    """reduce(values) over labeled rows. An all-ones mask selects the unmasked reduction itself, so
    the result is bit-identical to no mask (a fused multiply may reorder the float sum)."""
    if label_mask is None:
        return reduce(values, None)
    m = f32(label_mask)
    return jnp.where(jnp.all(m > 0), reduce(values, None), reduce(values * m, m))


def _mean(values, m):
    return jnp.mean(values) if m is None else jnp.sum(values) / jnp.maximum(jnp.sum(m), 1.0)


def _sum(values, m):
    return jnp.sum(values)


def target_or_teacher_argmax(labels, teacher_logits, label_mask=None):
    """DKD/WSL target: the labels, the teacher's argmax where there are none (None, or mask 0)."""
    t_arg = jnp.argmax(teacher_logits, axis=-1)
    if labels is None:
        return t_arg
    labels = flat_labels(labels)
    if label_mask is None:
        return labels
    return jnp.where(jnp.asarray(label_mask) > 0, labels, t_arg.astype(labels.dtype))


def _kl_logits(target_logits, input_logits):
    """KL_sum(softmax(target) ‖ softmax(input)) from log-softmaxes: a p that underflows to 0 adds
    exactly 0 instead of 0·log 0 = NaN."""
    p = softmax(target_logits, axis=-1)
    return jnp.sum(p * (jax.nn.log_softmax(target_logits, axis=-1) - jax.nn.log_softmax(input_logits, axis=-1)))


def cross_entropy(logits, labels, epsilon: Optional[float] = None, reduction: str = "mean",
                  label_mask=None):
    """PaddleClas CELoss on hard labels; ε in (0, 1) smooths over all C classes (true one included).

    An ε outside the open interval (0, 1) means no smoothing, as in the reference. With `label_mask`,
    unlabeled rows (mask 0) are excluded: `mean` averages over labeled rows only.
    """
    x = f32(logits)
    c = x.shape[-1]
    labels = flat_labels(labels)
    if label_mask is not None:  # unlabeled rows may carry any id (e.g. -1): keep gathers in range
        labels = jnp.where(jnp.asarray(label_mask) > 0, labels, 0)
    logp = jax.nn.log_softmax(x, axis=-1)
    if epsilon is not None and 0.0 < float(epsilon) < 1.0:
        eps = F32(epsilon)
        q = (1.0 - eps) * jax.nn.one_hot(labels, c, dtype=F32) + eps / c
        per_sample = -jnp.sum(q * logp, axis=-1)
    else:
        per_sample = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    if reduction == "mean":
        return _masked(_mean, per_sample, label_mask)
    if reduction == "sum":
        return _masked(_sum, per_sample, label_mask)
    if reduction == "none":
        return per_sample if label_mask is None else per_sample * f32(label_mask)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _teacher(t, teacher_grad: bool):
    """Paddle's soft-label cross_entropy and kl_div ops never differentiate their label input, so in
    PaddleClas the teacher side of CE/KD/DKD gets no gradient (golden files: grad_teacher == 0);
    `teacher_grad=True` gives the torch/mdistiller behaviour instead."""
    t = f32(t)
    return t if teacher_grad else jax.lax.stop_gradient(t)


def soft_ce_loss(student_logits, teacher_logits, teacher_grad: bool = False):
    """DistillationCELoss: CE of the student against softmax(teacher logits) as soft targets."""
    s, t = f32(student_logits), _teacher(teacher_logits, teacher_grad)
    per_sample = -jnp.sum(softmax(t, axis=-1) * jax.nn.log_softmax(s, axis=-1), axis=-1)
    return jnp.mean(per_sample)


def kl_div_loss(student_logits, teacher_logits, temperature: float = 4.0, teacher_grad: bool = False):
    """KLDivLoss / mdistiller kd_loss: T² · KL_sum(softmax_T(t) ‖ softmax_T(s)) / N (batchmean)."""
    s, t = f32(student_logits), _teacher(teacher_logits, teacher_grad)
    temp = float(temperature)
    return _kl_logits(t / temp, s / temp) * (temp * temp) / s.shape[0]


def dml_loss(student, teacher, act: Optional[str] = "softmax", sum_across_class_dim: bool = False,
             eps: float = 1e-12):
    """DMLLoss: symmetric KL per element, ×C quirk, eps in both numerator and denominator.

    `act=None` takes the inputs as probabilities. With the default reduction (mean over N·C elements)
    this is the batch mean of the symmetric KL; `sum_across_class_dim=True` is C times larger.
    """
    x, y = f32(student), f32(teacher)
    if act == "softmax":
        x, y = softmax(x, axis=-1), softmax(y, axis=-1)
    elif act == "sigmoid":
        x, y = jax.nn.sigmoid(x), jax.nn.sigmoid(y)
    elif act is not None:
        raise ValueError(f"act must be 'softmax', 'sigmoid' or None, got {act!r}")
    c = x.shape[-1]

    def k(a, b):  # reference _kldiv(a, b): b · log((b + eps) / (a + eps)) · C
        return b * jnp.log((b + eps) / (a + eps)) * c

    elem = (k(x, y) + k(y, x)) / 2.0
    if sum_across_class_dim:
        return jnp.mean(jnp.sum(elem, axis=-1))
    return jnp.mean(elem)


def _binary(z, is_gt):
    """DKD's [target, non-target] probabilities and their logs.

    As in the reference, each is a sum of softmax probabilities (in float32 that is the more accurate
    form); where a sum underflows (saturated ±30 logits) its log comes from log-sum-exps instead of
    log(0), so the loss and its gradient stay finite.
    """
    p = softmax(z, axis=-1)
    b = jnp.stack([jnp.sum(jnp.where(is_gt, p, 0.0), axis=-1), jnp.sum(jnp.where(is_gt, 0.0, p), axis=-1)], -1)
    log_p = jax.nn.log_softmax(z, axis=-1)  # one target class: its log-probability is exact
    log_b_exact = jnp.stack([jnp.sum(jnp.where(is_gt, log_p, 0.0), axis=-1),
                             jax.nn.logsumexp(jnp.where(is_gt, -jnp.inf, log_p), axis=-1)], -1)
    ok = b > 1e-30
    return b, jnp.where(ok, jnp.log(jnp.where(ok, b, 1.0)), log_b_exact)


def dkd_parts(student_logits, teacher_logits, target=None, temperature: float = 1.0,
              teacher_grad: bool = False):
    """(TCKD, NCKD) of DKD, each already T²-scaled and batch-averaged.

    TCKD compares the binary [target, non-target] distributions (sums of masked probabilities, not
    1 − p_gt); NCKD keeps the reference's `z/T − 1000·gt_mask` trick.
    """
    s, t = f32(student_logits), _teacher(teacher_logits, teacher_grad)
    n, c = s.shape
    if target is None:
        target = jnp.argmax(t, axis=-1)
    gt = jax.nn.one_hot(flat_labels(target), c, dtype=F32)
    is_gt = gt > 0
    temp = float(temperature)
    zs, zt = s / temp, t / temp
    scale = temp * temp / n
    bt, log_bt = _binary(zt, is_gt)
    _, log_bs = _binary(zs, is_gt)
    tckd = jnp.sum(bt * (log_bt - log_bs)) * scale
    nckd = _kl_logits(zt - 1000.0 * gt, zs - 1000.0 * gt) * scale
    return tckd, nckd


def dkd_loss(student_logits, teacher_logits, target=None, temperature: float = 1.0,
             alpha: float = 1.0, beta: float = 1.0, teacher_grad: bool = False):
    """DKDLoss: α·TCKD + β·NCKD; `target=None` means the teacher's argmax (PaddleClas)."""
    tckd, nckd = dkd_parts(student_logits, teacher_logits, target, temperature, teacher_grad)
    return alpha * tckd + beta * nckd


def dkd_warmup_factor(epoch, warmup_epochs: float):
    """mdistiller's min(epoch / warmup, 1); epochs count from 1, so epoch 1 already gets 1/warmup."""
    if not warmup_epochs:
        return F32(1.0)
    return jnp.minimum(f32(epoch) / float(warmup_epochs), 1.0)


def _pearson_rows(a, b, eps=1e-8):
    a = a - jnp.mean(a, axis=1, keepdims=True)
    b = b - jnp.mean(b, axis=1, keepdims=True)
    return jnp.sum(a * b, axis=1) / (safe_norm(a, 1) * safe_norm(b, 1) + eps)


def dist_loss(student_logits, teacher_logits, beta: float = 1.0, gamma: float = 1.0):
    """DISTLoss: β·(1 − mean row Pearson) + γ·(1 − mean column Pearson) of the softmaxes (no T)."""
    ys = softmax(f32(student_logits), axis=-1)
    yt = softmax(f32(teacher_logits), axis=-1)
    inter = 1.0 - jnp.mean(_pearson_rows(ys, yt))
    intra = 1.0 - jnp.mean(_pearson_rows(ys.T, yt.T))
    return beta * inter + gamma * intra


def wsl_loss(student_logits, teacher_logits, target=None, temperature: float = 2.0):
    """WSLLoss: T² · mean_n(w_n · soft-CE_T), w from detached T=1 CEs; a CE, not a KL."""
    s, t = f32(student_logits), f32(teacher_logits)
    c = s.shape[-1]
    if target is None:
        target = jnp.argmax(t, axis=-1)
    onehot = jax.nn.one_hot(flat_labels(target), c, dtype=F32)
    ce_s = -jnp.sum(onehot * jax.nn.log_softmax(jax.lax.stop_gradient(s), axis=-1), axis=-1)
    ce_t = -jnp.sum(onehot * jax.nn.log_softmax(jax.lax.stop_gradient(t), axis=-1), axis=-1)
    ratio = jnp.maximum(ce_s / (ce_t + 1e-7), 0.0)
    weight = 1.0 - jnp.exp(-ratio)
    temp = float(temperature)
    kd = -jnp.sum(softmax(t / temp, axis=-1) * jax.nn.log_softmax(s / temp, axis=-1), axis=-1)
    return jnp.mean(kd * weight) * (temp * temp)


def standardize_logits(logits, eps: float = 1e-7):
    """Logit standardization (Sun et al., CVPR 2024): per-sample z-score (z − mean) / (std + ε), std with
    Bessel's correction and ε = 1e-7, as the authors' `normalize` (torch.std is unbiased). A constant row maps
    to zeros with a finite gradient (safe_norm) instead of NaN."""
    z = f32(logits)
    c = z.shape[-1]
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    std = safe_norm(centred, -1)[..., None] / math.sqrt(max(c - 1, 1))
    return centred / (eps + std)


def _layer_norm(z, eps: float):
    """paddle F.layer_norm over the class axis without weight/bias: (z − mean) / √(biased var + ε)."""
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)


def skd_loss(student_logits, teacher_logits, target=None, temperature: float = 1.0, multiplier: float = 2.0,
             alpha: float = 0.9):
    """PaddleClas SKDLoss (spherical KD, Guo et al. 2020): both logits layer-normalised (ε = 1e-7) and scaled by
    `multiplier`, then α · T² · mean_n(soft-CE_T(teacher ‖ student)) + (1 − α) · CE(student, target).

    `target=None` means the teacher's argmax (PaddleClas). The teacher side is differentiated as in the
    reference (explicit softmax, not paddle's soft-label op); a frozen teacher is unaffected.
    """
    s = _layer_norm(f32(student_logits), 1e-7) * multiplier
    t = _layer_norm(f32(teacher_logits), 1e-7) * multiplier
    c = s.shape[-1]
    if target is None:
        target = jnp.argmax(t, axis=-1)
    temp = float(temperature)
    kd = -jnp.sum(softmax(t / temp, axis=-1) * jax.nn.log_softmax(s / temp, axis=-1), axis=-1)
    kd = jnp.mean(kd) * temp * temp
    onehot = jax.nn.one_hot(flat_labels(target), c, dtype=F32)
    ce = jnp.mean(-jnp.sum(onehot * jax.nn.log_softmax(s, axis=-1), axis=-1))
    return kd * alpha + ce * (1.0 - alpha)


def soft_cross_entropy(logits, soft_labels, epsilon: Optional[float] = None, reduction: str = "mean",
                       label_mask=None):
    """CE against soft targets q [N, C] (mixup / cutmix): per row −Σ_c q_c · log softmax(x)_c.

    ε in (0, 1) smooths like PaddleClas' CELoss on soft labels, (1 − ε)·q + ε/C (times the row's mass Σq, so
    rows that sum to 1 get exactly that). `mean` divides by N; with `label_mask` (SSLD, where the pipeline has
    already multiplied the one-hots by the mask) by the batch's ground-truth mass Σ q instead (at least 1), so
    a batch of fully labeled rows gives the plain mean.
    """
    x = f32(logits)
    q = f32(soft_labels)
    c = x.shape[-1]
    if q.shape != x.shape:
        raise ValueError(f"soft labels must have the logits' shape {x.shape}, got {q.shape}")
    mass = jnp.sum(q, axis=-1)
    if epsilon is not None and 0.0 < float(epsilon) < 1.0:
        eps = F32(epsilon)
        q = (1.0 - eps) * q + eps / c * mass[:, None]
    per_sample = -jnp.sum(q * jax.nn.log_softmax(x, axis=-1), axis=-1)
    if reduction == "mean":
        if label_mask is None:
            return jnp.mean(per_sample)
        return jnp.sum(per_sample) / jnp.maximum(jnp.sum(mass), 1.0)
    if reduction == "sum":
        return jnp.sum(per_sample)
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
