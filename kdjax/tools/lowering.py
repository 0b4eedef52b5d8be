"""The train and eval steps of a Trainer compiled from shapes alone.

Nothing is initialised or loaded: the state, frozen models and batch are `jax.ShapeDtypeStruct`s carrying the
shardings training would give them (the fsdp rule of `kdjax/runtime/mesh.py` applied to `jax.eval_shape` of the
same initialisers), so a step too large for this host can still be lowered and compiled, and a missing teacher
checkpoint does not matter. Used by `--mode=check` (FLOPs, memory per device; tools/preflight.py),
`kdjax.tools.bench` (FLOPs) and the HLO tests (which collectives the compiled program runs); what XLA reports
about the compiled program is read by kdjax/runtime/compiled.py.
"""

from typing import Dict, Optional

import jax
import jax.numpy as jnp

from kdjax.steps import LOSS_PARAMS, build_optimizer, cached_key, create_state, make_eval_step, make_train_step


def _shardings(tree):
    return jax.tree.map(lambda a: a.sharding, tree)


def _struct(shape_dtype, sharding):
    return jax.ShapeDtypeStruct(shape_dtype.shape, shape_dtype.dtype, sharding=sharding)


def abstract_state(trainer, tx, num_data: int = 0):
    """(TrainState, frozen variables) as sharded ShapeDtypeStructs: what `Trainer.initial_state` would create,
    init files or not (a loaded init has the shapes of a fresh one: `check_variables_match`)."""
    model, losses, sample = trainer.model, trainer.losses, trainer.sample

    def init(rng):
        variables = model.init_variables(rng, sample)
        params = {n: variables[n]["params"] for n in model.trainable}
        stats = {n: variables[n]["batch_stats"] for n in model.trainable if "batch_stats" in variables[n]}
        frozen = {n: variables[n] for n in model.frozen}
        outputs = model.apply(params, stats, frozen, sample, train=False, rng=rng)[0]
        loss_params = losses.init(rng, outputs)
        if loss_params:
            params[LOSS_PARAMS] = loss_params
        state = create_state(params, stats, tx, losses, losses.init_state(rng, num_data))
        return state, frozen

    shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
    par = trainer.parallel
    return jax.tree.map(lambda s: _struct(s, par.sharding_for(s.shape)), shapes)


def abstract_batch(trainer, batch_size: int, *, train: bool = True) -> Dict[str, jax.ShapeDtypeStruct]:
    """The keys and shapes a training (or eval) batch of `trainer`'s config has, split over the batch axes."""
    config, sh = trainer.config, trainer.parallel.batch_sharding()
    shape = tuple(trainer.sample.shape[1:])
    batch = {"image": jax.ShapeDtypeStruct((batch_size,) + shape, jnp.uint8, sharding=sh),
             "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sh)}
    if not train:
        batch["mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32, sharding=sh)
        return batch
    data = config.data
    if data.get("unlabeled_list") or data.get("unlabeled_split"):
        batch["label_mask"] = jax.ShapeDtypeStruct((batch_size,), jnp.float32, sharding=sh)
    if float(data.get("mixup_alpha", 0) or 0) > 0 or float(data.get("cutmix_alpha", 0) or 0) > 0:
        batch["soft_label"] = jax.ShapeDtypeStruct((batch_size, trainer.num_classes), jnp.float32, sharding=sh)
    if trainer.losses.needs_index:
        batch["index"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sh)
    if trainer.cache is not None:
        batch[cached_key(trainer.cache.model)] = jax.ShapeDtypeStruct((batch_size, trainer.num_classes), jnp.float32,
                                                                      sharding=sh)
    return batch


def lower_train_step(trainer, *, batch_size: Optional[int] = None, num_data: int = 0):
    """`jax.stages.Lowered` of the train step `Trainer.build_train_step` builds, from shapes only."""
    config, par = trainer.config, trainer.parallel
    batch_size = int(batch_size or config.train.batch_size)
    tx, schedule = build_optimizer(config.optim, 1000, 1000 * 240)
    state, frozen = abstract_state(trainer, tx, num_data)
    step = make_train_step(trainer.train_model, trainer.losses, tx, schedule, mean=trainer.mean, std=trainer.std,
                           steps_per_epoch=1000, compute_dtype=trainer.dtype,
                           grad_accum_steps=int(config.train.get("grad_accum_steps", 1) or 1),
                           cached=(trainer.cache.model,) if trainer.cache else (), gather_params=par.gather_params)
    jitted = par.jit_train_step(step, _shardings(state), _shardings(frozen))
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=par.replicated())
    return jitted.lower(state, frozen, abstract_batch(trainer, batch_size), rng)


def lower_eval_step(trainer, *, batch_size: Optional[int] = None):
    """`jax.stages.Lowered` of the eval step (`Trainer._jit_eval_step`), from shapes only."""
    config, par = trainer.config, trainer.parallel
    batch_size = int(batch_size or config.train.eval_batch_size)
    batch_size = max(par.data_size, batch_size - batch_size % par.data_size)
    tx, _ = build_optimizer(config.optim, 1, 1)
    state, frozen = abstract_state(trainer, tx)
    step = make_eval_step(trainer.model, mean=trainer.mean, std=trainer.std, compute_dtype=trainer.dtype,
                          gather_params=par.gather_params)
    jitted = par.jit_eval_step(step, _shardings(state.params), _shardings(state.batch_stats),
                               _shardings(frozen))
    return jitted.lower(state.params, state.batch_stats, frozen, abstract_batch(trainer, batch_size, train=False))
