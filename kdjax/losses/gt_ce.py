"""`gt_ce`: cross-entropy with the ground-truth labels (PaddleClas DistillationGTCELoss / CELoss), with label smoothing,
mixup/cutmix soft labels, and SSLD's unlabeled rows left out."""

from typing import Optional

import jax
import jax.numpy as jnp

from kdjax.losses.logit_ops import flat_labels
from kdjax.losses.numerics import F32, f32
from kdjax.losses.registry import LossSpec, one_of, optional_unit_open, register_loss


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



def _labels(entry, ctx):
    if ctx.labels is None:
        raise ValueError(f"losses[{entry.index}] ({entry.type}) needs labels; got labels=None")
    return ctx.labels


def _compute(e, a, b, ctx):
    p = e.params
    if ctx.soft_labels is not None:  # mixup / cutmix: soft-target CE
        return (soft_cross_entropy(a[e.s_key], ctx.soft_labels, p["epsilon"], p["reduction"], ctx.label_mask),)
    return (cross_entropy(a[e.s_key], _labels(e, ctx), p["epsilon"], p["reduction"], ctx.label_mask),)


def _separable(entry, batch) -> bool:
    """`mean` over a batch of per-sample CEs is; `sum` is not (the mean of k micro-batch sums is 1/k of the full
    batch's sum), and neither is the mean over labeled rows only (SSLD's label mask: sum / count of labeled rows,
    a count that differs between micro-batches)."""
    return entry.params["reduction"] == "mean" and not batch.label_mask


register_loss(LossSpec(
    "gt_ce", "CE with ground-truth labels (DistillationGTCELoss)", "supervised cross-entropy", "models", "required",
    dict(epsilon=None, reduction="mean"), _compute,
    checks=dict(epsilon=optional_unit_open, reduction=one_of("mean", "sum")), task=True,
    separable=_separable))
