"""The pure train and eval steps. Nothing here knows about devices; `parallel.py` assembles the jit signature."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from kdjax.distill_model import DistillationModel, normalize

LOSS_PARAMS = "_losses"  # key of learnable loss-side modules (MGD generator, AFD attention) in state.params


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any          # {trainable model name: params, "_losses": loss-module params}
    batch_stats: Any     # {trainable model name: batch_stats}
    opt_state: Any
    nonfinite_steps: jax.Array   # steps whose loss was NaN/inf and whose update was dropped
    first_nonfinite: jax.Array   # step of the first such step, -1 if none


def create_state(params, batch_stats, tx) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), nonfinite_steps=jnp.zeros((), jnp.int32),
                      first_nonfinite=jnp.full((), -1, jnp.int32))


def _topk_hits(logits, labels, k):
    k = min(k, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def make_train_step(model: DistillationModel, losses, tx, schedule, *, mean, std, steps_per_epoch: int,
                    compute_dtype=jnp.float32):
    def train_step(state: TrainState, frozen, batch, rng):
        rng = jax.random.fold_in(rng, state.step)
        r_model, r_loss = jax.random.split(rng)
        images = normalize(batch["image"], mean, std, compute_dtype)
        labels = batch["label"]
        label_mask = batch.get("label_mask")
        epoch = (state.step // steps_per_epoch + 1).astype(jnp.float32)

        def loss_fn(params):
            model_params = {k: v for k, v in params.items() if k != LOSS_PARAMS}
            outputs, new_stats = model.apply(model_params, state.batch_stats, frozen, images, train=True,
                                             rng=r_model)
            outputs = jax.tree.map(lambda a: a.astype(jnp.float32), outputs)
            total, terms = losses(params.get(LOSS_PARAMS, {}), outputs, labels, rng=r_loss, epoch=epoch,
                                  label_mask=label_mask)
            return total, (terms, new_stats, outputs)

        (total, (terms, new_stats, outputs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(total)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            batch_stats=keep(new_stats, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state),
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
            first_nonfinite=jnp.where((state.first_nonfinite < 0) & ~finite, state.step, state.first_nonfinite),
        )
        metrics = {"loss": total, "lr": schedule(state.step)}
        metrics.update({f"loss/{k}": v for k, v in terms.items()})
        for name, out in outputs.items():
            metrics[f"top1/{name}"] = jnp.mean(_topk_hits(out["logits"], labels, 1))
        return new_state, metrics

    return train_step


def make_eval_step(model: DistillationModel, *, mean, std, compute_dtype=jnp.float32):
    """Sums of top-1/top-5 hits and CE per sub-model over the masked (non-padding) rows of a batch."""

    def eval_step(params, batch_stats, frozen, batch):
        images = normalize(batch["image"], mean, std, compute_dtype)
        labels, mask = batch["label"], batch["mask"]
        model_params = {k: v for k, v in params.items() if k != LOSS_PARAMS}
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
