"""What one step computes: the TrainState, the optimizer from `config.optim`, and the pure train and eval steps.

Nothing here knows about devices; `kdjax/runtime/mesh.py` assembles the jit signature."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from kdjax.optim import check_optimizer
from kdjax.optim.dot import DotOptimizer, reached
from kdjax.errors import ConfigError
from kdjax.models.distillation import DistillationModel, normalize

LOSS_PARAMS = "_losses"  # key of learnable loss-side modules (MGD generator, AFD attention) in state.params


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any          # {trainable model name: params, "_losses": loss-module params}
    batch_stats: Any     # {trainable model name: batch_stats}
    opt_state: Any
    nonfinite_steps: jax.Array   # steps whose loss was NaN/inf and whose update was dropped
    first_nonfinite: jax.Array   # step of the first such step, -1 if none
    nonfinite_counts: Any = None  # {check name: in how many dropped steps it was NaN/inf}, see nonfinite_checks
    loss_state: Any = None  # non-gradient loss state (CRD memory banks), CombinedLoss.init_state / apply; None if none


# ---- optimizer ------------------------------------------------------------------------------------------------
def lr_schedule(optim, steps_per_epoch: int, total_steps: int):
    base = float(optim.lr)
    warmup = int(round(float(optim.get("warmup_epochs", 0.0)) * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    kind = optim.get("schedule", "cosine")
    if kind == "cosine":
        main = optax.cosine_decay_schedule(base, max(total_steps - warmup, 1))
    elif kind == "step":
        boundaries = {int(e * steps_per_epoch) - warmup: float(optim.get("decay_rate", 0.1))
                      for e in optim.get("milestones", ())}
        main = optax.piecewise_constant_schedule(base, {b: r for b, r in boundaries.items() if b > 0})
    elif kind == "constant":
        main = optax.constant_schedule(base)
    else:
        raise ConfigError("optim.schedule", f"unknown schedule {kind!r}; use 'cosine', 'step' or 'constant'")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), main], [warmup])


def build_optimizer(optim, steps_per_epoch: int, total_steps: int):
    """Returns (optax transformation, schedule). Weight decay is PyTorch/Paddle-style L2 added to the gradient.

    name='dot' returns a `kdjax.optim.dot.DotOptimizer` instead (separate task / distillation momenta, its own weight
    decay); make_train_step then computes the two gradients apart."""
    schedule = lr_schedule(optim, steps_per_epoch, total_steps)
    name = optim.get("name", "sgd")
    wd = float(optim.get("weight_decay", 0.0))
    check_optimizer(optim)
    if name == "dot":
        return DotOptimizer(schedule, float(optim.get("momentum", 0.9)), float(optim.delta), wd), schedule
    if name == "sgd":
        inner = optax.sgd(schedule, momentum=float(optim.get("momentum", 0.9)) or None,
                          nesterov=bool(optim.get("nesterov", False)))
    elif name == "adamw":
        return optax.adamw(schedule, weight_decay=wd), schedule
    else:
        raise ConfigError("optim.name", f"unknown optimizer {name!r}; use 'sgd' or 'adamw'")
    tx = optax.chain(optax.add_decayed_weights(wd), inner) if wd else inner
    clip = float(optim.get("grad_clip_norm", 0.0) or 0.0)
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx, schedule


# ---- state and steps ----------------------------------------------------------------------------------------------

def nonfinite_checks(losses=None):
    """What a step checks for NaN/inf: the total loss, each loss term, the gradients, the updated state."""
    terms = tuple(f"loss/{t}" for t in losses.term_names) if losses is not None else ()
    return ("loss",) + terms + ("grads", "update")


def create_state(params, batch_stats, tx, losses=None, loss_state=None) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), nonfinite_steps=jnp.zeros((), jnp.int32),
                      first_nonfinite=jnp.full((), -1, jnp.int32),
                      nonfinite_counts={k: jnp.zeros((), jnp.int32) for k in nonfinite_checks(losses)},
                      loss_state=loss_state or None)


def apply_losses(losses, loss_params, loss_state, outputs, batch, rng, epoch):
    """(total, terms, new loss_state). The batch's "soft_label" (mixup/cutmix) and "index" (dataset index, CRD)
    are passed on when present; stateful losses (loss_state not None) go through `losses.apply`."""
    extra = {kw: batch[k] for kw, k in (("soft_labels", "soft_label"), ("indices", "index")) if k in batch}
    kw = dict(rng=rng, epoch=epoch, label_mask=batch.get("label_mask"), **extra)
    if loss_state is not None:
        return losses.apply(loss_params, loss_state, outputs, batch["label"], **kw)
    total, terms = losses(loss_params, outputs, batch["label"], **kw)
    return total, terms, None


def _all_finite(tree):
    flags = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def _topk_hits(logits, labels, k):
    """1.0 where `labels` is among the top `k` logits (lax.top_k's order: ties go to the lower class index).

    Counted as the label's rank rather than with lax.top_k, whose partitioner gathers a batch split over devices
    onto every device; a per-row count stays split."""
    k = min(k, logits.shape[-1])
    own = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    before = jnp.arange(logits.shape[-1]) < labels[:, None]
    rank = jnp.sum((logits > own) | ((logits == own) & before), axis=-1)
    valid = (labels >= 0) & (labels < logits.shape[-1])  # e.g. SSLD's unlabeled rows: never a hit, as with top_k
    return ((rank < k) & valid).astype(jnp.float32)


def cast_floats(tree, dtype):
    """The mixed-precision policy's cast: floating leaves to `dtype`, others untouched."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _compute_variables(params, frozen, dtype):
    """Model params and frozen models' params in the compute dtype; batch statistics stay float32."""
    model_params = {k: v for k, v in params.items() if k != LOSS_PARAMS}
    if jnp.dtype(dtype) == jnp.float32:
        return model_params, frozen
    frozen = {n: {c: (cast_floats(v, dtype) if c == "params" else v) for c, v in variables.items()}
              for n, variables in frozen.items()}
    return cast_floats(model_params, dtype), frozen


def cached_key(name: str) -> str:
    """Batch key of a model's precomputed logits (offline distillation, `config.teacher_cache`)."""
    return f"cached_logits/{name}"


def micro_batches(batch, k: int):
    """[B, ...] → [k, B/k, ...]; micro-batch j takes rows j, j+k, j+2k, ... so that every device's contiguous
    slice of the batch contributes equally to every micro-batch (no data moves between devices)."""
    return jax.tree.map(lambda a: jnp.swapaxes(a.reshape((a.shape[0] // k, k) + a.shape[1:]), 0, 1), batch)


def make_train_step(model: DistillationModel, losses, tx, schedule, *, mean, std, steps_per_epoch: int,
                    compute_dtype=jnp.float32, grad_accum_steps: int = 1, cached=(), gather_params=None):
    """The pure train step.

    compute_dtype: bfloat16 runs the forward and backward passes with bf16 copies of the params and inputs
      (float32 master params, optimizer state, batch statistics and losses).
    grad_accum_steps: k > 1 splits the batch into k micro-batches run one after another in a lax.scan, averaging
      their gradients (BatchNorm statistics are updated micro-batch by micro-batch); one optimizer update.
    cached: names of frozen models whose logits come with the batch (`cached_key(name)`) instead of being computed.
    gather_params: applied to (params, batch_stats, frozen) before the forward pass (`Parallel.gather_params`:
      under fsdp, gathers them whole so that every layer computes on batch-split activations and the gradients
      are reduce-scattered back; see kdjax/runtime/mesh.py). None: used as they are.
    """
    accum = int(grad_accum_steps or 1)
    dot = isinstance(tx, DotOptimizer)  # task and distillation gradients apart (kdjax/optim/dot.py)
    task_names = frozenset(losses.task_term_names) if dot else frozenset()

    def input_views(batch):
        """{"": the batch's images, view: batch["image_<view>"] for each extra view a loss reads (LossSpec.views)}."""
        return {v: normalize(batch["image_" + v if v else "image"], mean, std, compute_dtype)
                for v in ("",) + tuple(getattr(losses, "views", ()))}

    def forward(params, batch_stats, frozen, batch, r_model, r_loss, epoch, loss_state=None):
        if gather_params is not None:
            params, batch_stats, frozen = gather_params((params, batch_stats, frozen))
        model_params, frozen_c = _compute_variables(params, frozen, compute_dtype)
        outputs, new_stats = model.apply_views(model_params, batch_stats, frozen_c, input_views(batch), train=True,
                                               rng=r_model)
        outputs = jax.tree.map(lambda a: a.astype(jnp.float32), outputs)
        for name in cached:
            outputs[name] = {"logits": jax.lax.stop_gradient(batch[cached_key(name)].astype(jnp.float32))}
        total, terms, new_loss_state = apply_losses(losses, params.get(LOSS_PARAMS, {}), loss_state, outputs, batch,
                                                    r_loss, epoch)
        top1 = {name: jnp.mean(_topk_hits(out["logits"], batch["label"], 1)) for name, out in outputs.items()}
        return total, (terms, new_stats, top1, new_loss_state)

    grad_fn = jax.value_and_grad(forward, has_aux=True)

    def split_forward(params, *args):
        """((task loss, distillation loss), forward's (total, aux)) for DOT."""
        total, aux = forward(params, *args)
        terms = aux[0]
        task = sum((v for k, v in terms.items() if k in task_names), jnp.zeros((), jnp.float32))
        kd = sum((v for k, v in terms.items() if k not in task_names), jnp.zeros((), jnp.float32))
        return (task, kd), (total, aux)

    def dot_grad_fn(params, *args):
        """forward's ((total, aux), grads) with grads = (task gradient, distillation gradient): one forward pass,
        two backward passes (the reference's two backward calls on one graph)."""
        _, vjp, (total, aux) = jax.vjp(lambda p: split_forward(p, *args), params, has_aux=True)
        one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
        return (total, aux), (vjp((one, zero))[0], vjp((zero, one))[0])

    if dot:
        grad_fn = dot_grad_fn  # noqa: F811

    def train_step(state: TrainState, frozen, batch, rng):
        rng = jax.random.fold_in(rng, state.step)
        r_model, r_loss = jax.random.split(rng)
        epoch = (state.step // steps_per_epoch + 1).astype(jnp.float32)

        if accum == 1:
            (total, (terms, new_stats, top1, loss_state)), grads = grad_fn(
                state.params, state.batch_stats, frozen, batch, r_model, r_loss, epoch, state.loss_state)
        else:
            def micro(carry, xs):
                grad_sum, stats, ls = carry
                mb, j = xs
                (t, (tm, st, t1, ls)), g = grad_fn(state.params, stats, frozen, mb, jax.random.fold_in(r_model, j),
                                                   jax.random.fold_in(r_loss, j), epoch, ls)
                return (jax.tree.map(jnp.add, grad_sum, g), st, ls), (t, tm, t1)

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            zeros = (zeros, zeros) if dot else zeros
            (grad_sum, new_stats, loss_state), (totals, terms_k, top1_k) = jax.lax.scan(
                micro, (zeros, state.batch_stats, state.loss_state), (micro_batches(batch, accum), jnp.arange(accum)))
            grads = jax.tree.map(lambda g: g / accum, grad_sum)
            total = jnp.mean(totals)
            terms, top1 = jax.tree.map(jnp.mean, terms_k), jax.tree.map(jnp.mean, top1_k)

        if dot:  # which parameters each loss reaches: read off the traced forward pass (shapes only)
            task_mask, kd_mask = reached(lambda p, *a: split_forward(p, *a)[0], state.params, state.batch_stats,
                                         frozen, batch, r_model, r_loss, epoch, state.loss_state)
            params, opt_state = tx.step(grads[0], grads[1], state.opt_state, state.params, task_mask, kd_mask)
        else:
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        # a step applies nothing unless the loss, every gradient and the whole updated state are finite
        checks = {"loss": jnp.isfinite(total), "grads": _all_finite(grads),
                  "update": _all_finite((params, new_stats, opt_state, loss_state))}
        checks.update({f"loss/{k}": jnp.isfinite(v) for k, v in terms.items()})
        finite = checks["loss"] & checks["grads"] & checks["update"]
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            batch_stats=keep(new_stats, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state),
            loss_state=keep(loss_state, state.loss_state),
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
            first_nonfinite=jnp.where((state.first_nonfinite < 0) & ~finite, state.step, state.first_nonfinite),
            nonfinite_counts=None if state.nonfinite_counts is None else {
                k: n + (~finite & ~checks.get(k, jnp.array(True))).astype(jnp.int32)
                for k, n in state.nonfinite_counts.items()},
        )
        metrics = {"loss": total, "lr": schedule(state.step)}
        metrics.update({f"loss/{k}": v for k, v in terms.items()})
        metrics.update({f"top1/{name}": v for name, v in top1.items()})
        return new_state, metrics

    return train_step


def make_eval_step(model: DistillationModel, *, mean, std, compute_dtype=jnp.float32, gather_params=None):
    """Sums of top-1/top-5 hits and CE per sub-model over the masked (non-padding) rows of a batch.
    gather_params: as for `make_train_step`."""

    def eval_step(params, batch_stats, frozen, batch):
        if gather_params is not None:
            params, batch_stats, frozen = gather_params((params, batch_stats, frozen))
        images = normalize(batch["image"], mean, std, compute_dtype)
        labels, mask = batch["label"], batch["mask"]
        model_params, frozen = _compute_variables(params, frozen, compute_dtype)
        outputs, _ = model.apply(model_params, batch_stats, frozen, images, train=False, rng=jax.random.PRNGKey(0))
        sums = {"count": jnp.sum(mask)}
        for name, out in outputs.items():
            logits = out["logits"].astype(jnp.float32)
            ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
            sums[f"{name}/top1"] = jnp.sum(_topk_hits(logits, labels, 1) * mask)
            sums[f"{name}/top5"] = jnp.sum(_topk_hits(logits, labels, 5) * mask)
            sums[f"{name}/loss"] = jnp.sum(ce * mask)
        return sums

    return eval_step
