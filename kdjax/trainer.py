"""One training phase: build the DistillationModel, restore or initialise, train, evaluate, export.

`train.py` runs a phase per model that must be trained first (init="train") and then the distillation phase.
"""

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from kdjax.weights import export_dir as export_lib
from kdjax.data import teacher_cache
from kdjax.config.check import check_model_outputs
from kdjax.runtime.checkpoints import PhaseCheckpoints
from kdjax.data.device_prefetch import DevicePrefetch
from kdjax.data.pipeline import eval_batches, train_pipeline
from kdjax.models.distillation import DistillationModel, build_submodels, normalize
from kdjax.errors import KdjaxError, nonfinite_message
from kdjax.runtime.host_memory import compile_then_release, release_host_memory
from kdjax.weights.init import check_variables_match, load_init
from kdjax.losses import build_losses
from kdjax.data.indexed import IndexedRecords
from kdjax.steps import build_optimizer
from kdjax.runtime.mesh import make_parallel
from kdjax.runtime.preemption import Preemption
from kdjax.runtime.run_log import RunLog
from kdjax.steps import LOSS_PARAMS, cached_key, create_state, make_eval_step, make_train_step

log = logging.getLogger("kdjax")


class NonFiniteLoss(KdjaxError):
    pass


def _compute_dtype(config):
    return jnp.bfloat16 if config.get("precision", "float32") == "bfloat16" else jnp.float32


class Phase:
    """Everything needed to train or evaluate one DistillationModel configuration in `directory`."""

    def __init__(self, config, directory: str, train_source, test_source, info, desc: str):
        self.config, self.directory, self.desc = config, directory, desc
        self.train_source, self.test_source, self.info = train_source, test_source, info
        self.num_classes = int(config.data.get("num_classes") or info.num_classes)
        self.submodels = build_submodels(config.models, self.num_classes)
        self.model = DistillationModel(self.submodels)
        self.parallel = make_parallel(config.get("mesh"), config.train.batch_size,
                                      grad_accum_steps=int(config.train.get("grad_accum_steps", 1) or 1))
        self.mean, self.std = tuple(config.data.mean), tuple(config.data.std)
        self.dtype = _compute_dtype(config)
        self.losses = build_losses(list(config.losses.values()))
        self.sample = normalize(jnp.zeros((2,) + tuple(info.image_shape), jnp.uint8), self.mean, self.std)
        check_model_outputs(config, self.model, self.losses, self.sample, self.num_classes)
        # offline distillation: the cached model's logits come with each batch; the train step does not run it
        cached = teacher_cache.check(config)
        self.cache = teacher_cache.TeacherCache(config.teacher_cache) if cached else None
        self.train_model = DistillationModel({n: s for n, s in self.submodels.items() if n != cached}) \
            if cached else self.model

    # ---- variables -------------------------------------------------------------------------------------------
    def initial_variables(self):
        """(trainable params, batch_stats, frozen variables), inits loaded, loss modules initialised.

        Device arrays in their shardings (`parallel.py`): shapes come from `jax.eval_shape`, fresh variables are
        initialised directly into their shards by a jitted init, loaded ones are placed slice by slice.
        """
        rng = jax.random.PRNGKey(int(self.config.seed))
        par = self.parallel
        shapes = jax.eval_shape(self.model.init_variables, rng, self.sample)
        cache = os.path.join(self.directory, "imported")
        loaded = {}
        for name, sub in self.submodels.items():
            if sub.init:
                variables = load_init(name, sub, cache)
                check_variables_match(name, shapes[name], variables, sub.init)
                loaded[name] = jax.tree.map(lambda ref, v: np.asarray(v, dtype=ref.dtype), shapes[name],
                                            {k: variables[k] for k in shapes[name]})
        fresh, _ = par.init_sharded(
            lambda r: {n: v for n, v in self.model.init_variables(r, self.sample).items() if n not in loaded}, rng)
        fresh.update(par.put(loaded))
        frozen = {n: fresh[n] for n in self.model.frozen}
        params = {n: fresh[n]["params"] for n in self.model.trainable}
        batch_stats = {n: fresh[n]["batch_stats"] for n in self.model.trainable if "batch_stats" in fresh[n]}
        outputs = jax.eval_shape(lambda p, b, f: self.model.apply(p, b, f, self.sample, train=False, rng=rng)[0],
                                 params, batch_stats, frozen)
        loss_params, _ = par.init_sharded(lambda r: self.losses.init(r, outputs), jax.random.fold_in(rng, 99))
        if loss_params:
            params[LOSS_PARAMS] = loss_params
        return params, batch_stats, frozen

    def initial_state(self, tx):
        """(TrainState, frozen variables) created in their shardings."""
        params, batch_stats, frozen = self.initial_variables()
        num_data = len(self.train_source) if self.losses.stateful else 0  # CRD memory banks: one row per example
        state_rng = jax.random.PRNGKey(int(self.config.seed) + 98)
        state, _ = self.parallel.init_sharded(
            lambda p, b: create_state(p, b, tx, self.losses, self.losses.init_state(state_rng, num_data, frozen)),
            params, batch_stats)
        return state, frozen

    # ---- training --------------------------------------------------------------------------------------------
    def build_train_step(self, steps_per_epoch: int, total_steps: int):
        """(jitted train step, replicated initial state, replicated frozen variables): exactly what `train` runs;
        `kdjax.tools.bench` times it on synthetic batches."""
        tx, schedule = build_optimizer(self.config.optim, steps_per_epoch, total_steps)
        state, frozen = self.initial_state(tx)
        par = self.parallel
        train_step = par.jit_train_step(make_train_step(
            self.train_model, self.losses, tx, schedule, mean=self.mean, std=self.std,
            steps_per_epoch=steps_per_epoch, compute_dtype=self.dtype,
            grad_accum_steps=int(self.config.train.get("grad_accum_steps", 1) or 1),
            cached=(self.cache.model,) if self.cache else ()), par.shardings_of(state), par.shardings_of(frozen))
        release_host_memory(clear_jax_caches=True)  # initialisation's executables and garbage (host_memory.py)
        return compile_then_release(train_step), state, frozen

    def _jit_eval_step(self, state, frozen):
        par = self.parallel
        return par.jit_eval_step(make_eval_step(self.model, mean=self.mean, std=self.std, compute_dtype=self.dtype),
                                 par.shardings_of(state.params), par.shardings_of(state.batch_stats),
                                 par.shardings_of(frozen))

    def train(self, export_dir: str) -> dict:
        cfg, tcfg = self.config, self.config.train
        train_source = self.train_source
        if self.cache is not None:
            self.cache.check_source(train_source)
            train_source = IndexedRecords(train_source, needed_by="teacher_cache")
        if self.losses.needs_index:  # batches carry "index" (CRD)
            train_source = IndexedRecords(train_source)
        pipe = train_pipeline(train_source, global_batch=tcfg.batch_size, epochs=tcfg.epochs,
                              seed=int(cfg.seed), process_index=jax.process_index(),
                              process_count=jax.process_count(), augment=cfg.data.augment,
                              num_threads=int(cfg.data.num_threads), prefetch=int(cfg.data.prefetch))
        train_step, state, frozen = self.build_train_step(pipe.steps_per_epoch, pipe.total_steps)
        par = self.parallel
        ckpts = PhaseCheckpoints(os.path.join(self.directory, "checkpoints"), keep=int(tcfg.keep_checkpoints))
        data_iter = iter(pipe.dataset)
        restored = ckpts.restore(par.abstract(state), data_iter)
        start = 0
        is_main = jax.process_index() == 0
        if restored is not None:
            state, _ = restored
            start = int(jax.device_get(state.step))
            if is_main:
                print(f"[{self.desc}] resuming from step {start} of {pipe.total_steps} ({ckpts.directory})",
                      flush=True)
        data_iter = self._device_batches(data_iter)
        eval_step = self._jit_eval_step(state, frozen)
        runlog = RunLog(self.directory, pipe.total_steps, start, tcfg.batch_size, self.desc, enabled=is_main)
        rng = jax.random.PRNGKey(int(cfg.seed) + 1)
        eval_every = max(1, int(round(float(tcfg.eval_every_epochs) * pipe.steps_per_epoch)))
        meta = {"desc": self.desc, "total_steps": pipe.total_steps}
        # waiting for data: `idle` counts a wait only when the step dispatched before it had already finished by
        # the time the batch arrived (the devices sat idle, at most that long); `blocked` every wait of the loop
        # thread, most of which overlaps the asynchronously running previous step
        idle, blocked, in_flight = 0.0, 0.0, None
        loop_start, last_eval = time.perf_counter(), None
        stop_after = int(tcfg.get("stop_after_steps", 0) or 0)
        step = start
        try:
            with Preemption() as preempt:
                while step < pipe.total_steps:
                    t0 = time.perf_counter()
                    batch = next(data_iter)
                    waited = time.perf_counter() - t0
                    blocked += waited
                    if in_flight is None or in_flight.is_ready():
                        idle += waited
                    state, metrics = train_step(state, frozen, batch, rng)
                    in_flight = state.step
                    step += 1
                    last = step == pipe.total_steps
                    if step % int(tcfg.log_every_steps) == 0 or last:
                        self._check_finite(state, metrics, ckpts)
                        runlog.scalars(step, self._with_counters(jax.device_get(metrics), state, pipe))
                        runlog.advance(step)
                    if step % eval_every == 0 or last:
                        last_eval = evaluate_split(par, eval_step, state.params, state.batch_stats, frozen,
                                             self.test_source, batch_size=int(tcfg.eval_batch_size))
                        runlog.scalars(step, {k: v for k, v in last_eval.items() if k != "count"}, kind="eval")
                    if stop_after and step - start >= stop_after and not last:
                        preempt.requested = True
                    preempt.agree(step)  # multi-host: all processes stop at the same step
                    if step % int(tcfg.checkpoint_every_steps) == 0 or last or preempt.requested:
                        self._check_finite(state, metrics, ckpts)
                        ckpts.save(step, state, data_iter, meta)
                    if preempt.requested and not last:
                        ckpts.wait()
                        runlog.message(f"[{self.desc}] stopping early: saved step {step} in {ckpts.directory}; "
                                       f"run the same command again to resume")
                        return {"preempted": True, "step": step}
        finally:
            ckpts.close()
            runlog.close()
            if hasattr(data_iter, "close"):  # reader threads / worker processes
                data_iter.close()
        elapsed = time.perf_counter() - loop_start
        if last_eval is None:
            last_eval = evaluate_split(par, eval_step, state.params, state.batch_stats, frozen, self.test_source,
                                 batch_size=int(tcfg.eval_batch_size))
        self.export(export_dir, state, frozen)  # every process: gathers FSDP shards; process 0 writes
        steps_run = pipe.total_steps - start
        share = (lambda t: t / elapsed if elapsed > 0 and steps_run else 0.0)
        result = dict(last_eval, steps=pipe.total_steps, seconds=elapsed, data_wait_fraction=share(idle),
                      data_blocked_fraction=share(blocked))
        if is_main and steps_run:
            with open(os.path.join(self.directory, "result.json"), "w") as f:
                json.dump(result, f, indent=2)
            print(f"[{self.desc}] {steps_run} steps in {elapsed:.1f}s "
                  f"({steps_run * tcfg.batch_size / elapsed:.0f} img/s); devices waiting for data "
                  f"{100 * result['data_wait_fraction']:.1f}% of the time (loop thread blocked on data "
                  f"{100 * result['data_blocked_fraction']:.1f}%, counting time the previous step was still running)",
                  flush=True)
        return result

    def _device_batches(self, data_iter):
        """Host batches → device batches (teacher-cache outputs added first), `data.device_prefetch` of them made
        ready ahead by a thread (kdjax/data/device_prefetch.py); 0: on the loop's thread, as each is needed."""
        par, cache = self.parallel, self.cache

        def transfer(batch):
            if cache is not None:
                batch = cache.complete(batch, cached_key(cache.model), keep_index=self.losses.needs_index)
            return par.put_batch(batch)

        return DevicePrefetch(data_iter, transfer, int(self.config.data.get("device_prefetch", 2) or 0))

    def _with_counters(self, metrics: dict, state, pipe) -> dict:
        """Logged scalars plus the run's health counters: dropped non-finite steps, skipped bad images."""
        metrics = dict(metrics)
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad:
            metrics["nonfinite_steps"] = bad
        if self.config.data.get("skip_bad_images"):
            metrics["data/bad_images"] = pipe.bad_images.value
        return metrics

    def _check_finite(self, state, metrics, ckpts):
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad == 0:
            return
        policy, limit = self.config.train.nonfinite, int(self.config.train.max_skipped)
        if policy == "skip" and bad <= limit:
            return
        ckpts.wait()  # so that "last good checkpoint" names a committed one
        raise NonFiniteLoss(nonfinite_message(
            self.desc, self.config, self.losses, int(jax.device_get(state.first_nonfinite)) + 1, bad,
            jax.device_get(state.nonfinite_counts or {}), ckpts.latest_step(), ckpts.directory))

    def restore_latest(self):
        """(state, frozen, step) from the newest good checkpoint of this phase, for evaluation."""
        tx, _ = build_optimizer(self.config.optim, 1, 1)
        state, frozen = self.initial_state(tx)
        par = self.parallel
        ckpts = PhaseCheckpoints(os.path.join(self.directory, "checkpoints"), read_only=True)
        try:
            restored = ckpts.restore(par.abstract(state))
        finally:
            ckpts.close()
        if restored is None:
            return None
        state = restored[0]
        return state, frozen, int(jax.device_get(state.step))

    def evaluate(self, state, frozen) -> dict:
        eval_step = self._jit_eval_step(state, frozen)
        return evaluate_split(self.parallel, eval_step, state.params, state.batch_stats, frozen, self.test_source,
                        batch_size=int(self.config.train.eval_batch_size))

    # ---- export ----------------------------------------------------------------------------------------------
    def export(self, export_dir: str, state, frozen):
        """Called on every process (FSDP-sharded params are gathered with a collective); process 0 writes."""
        name = self.config.export_model
        if name in frozen:
            variables = self.parallel.fetch(frozen[name])
        else:
            variables = {"params": state.params[name]}
            if name in state.batch_stats:
                variables["batch_stats"] = state.batch_stats[name]
            variables = self.parallel.fetch(variables)
        if jax.process_index() != 0:
            return
        sub = self.submodels[name]
        kwargs = {k: v for k, v in sub.kwargs.items() if k != "num_classes"}
        spec = export_lib.make_spec(sub.arch, kwargs, self.num_classes, self.info.image_shape, self.mean, self.std,
                                    self.info.label_names, model_name=name, dataset=self.config.data.name)
        export_lib.save_export(export_dir, variables, spec)


def evaluate_split(parallel, eval_step, params, batch_stats, frozen, source, *, batch_size: int, limit: int = 0) -> dict:
    """Top-1 / top-5 / mean CE of every sub-model over a whole split (PaddleClas tools/eval.py):
    {"<model>/top1": fraction, "<model>/top5": ..., "<model>/loss": mean CE, "count": n}."""
    batch_size = max(parallel.data_size, batch_size - batch_size % parallel.data_size)
    totals = None
    for local in eval_batches(source, global_batch=batch_size, process_index=jax.process_index(),
                              process_count=jax.process_count(), limit=limit):
        sums = eval_step(params, batch_stats, frozen, parallel.put_batch(local))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = {k: float(np.asarray(v)) for k, v in jax.device_get(totals).items()}
    count = max(totals.pop("count"), 1.0)
    out = {k: v / count for k, v in totals.items()}
    out["count"] = int(count)
    return out
