"""The Trainer: one DistillationModel configuration in one directory, initialised or restored, trained, evaluated
and exported.

`train.py` runs a Trainer per model that must be trained first (init="train") and then the distillation Trainer;
`evaluate.py` uses one to restore a checkpoint. The loop itself (`Trainer.train`) reads top to bottom; what it calls
by name lives in kdjax/runtime/ (loop.py: cadence, data wait, non-finite policy; preemption.py; checkpoints.py).
"""

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from kdjax.weights import export_dir as export_lib
from kdjax.data import teacher_cache
from kdjax.config.check import check_model_outputs, check_teacher_cache
from kdjax.runtime.checkpoints import PhaseCheckpoints
from kdjax.data.device_prefetch import DevicePrefetch
from kdjax.data.pipeline import eval_batches, train_pipeline
from kdjax.data.preprocess import run_normalization
from kdjax.models.distillation import DistillationModel, build_submodels, normalize
from kdjax.runtime.host_memory import compile_then_release, release_host_memory
from kdjax.weights.init import check_variables_match, load_init
from kdjax.losses import build_losses
from kdjax.data.indexed import IndexedRecords
from kdjax.steps import build_optimizer
from kdjax.runtime.mesh import make_parallel
from kdjax.runtime.loop import Cadence, DataWait, NonFinitePolicy
from kdjax.runtime.oserrors import close_all
from kdjax.runtime.preemption import Preemption
from kdjax.runtime.run_log import RunLog
from kdjax.runtime.workdir import write_json
from kdjax.weights.best import BestModel
from kdjax.config.metric_names import rename, term_labels
from kdjax.weights.from_workdir import submodel_spec, write_model_specs
from kdjax.steps import LOSS_PARAMS, cached_key, create_state, make_eval_step, make_train_step

log = logging.getLogger("kdjax")


def _compute_dtype(config):
    return jnp.bfloat16 if config.get("precision", "float32") == "bfloat16" else jnp.float32


class Trainer:
    """Everything needed to train or evaluate one DistillationModel configuration in `directory`."""

    def __init__(self, config, directory: str, train_source, test_source, info, desc: str):
        self.config, self.directory, self.desc = config, directory, desc
        self.train_source, self.test_source, self.info = train_source, test_source, info
        self.num_classes = int(config.data.get("num_classes") or info.num_classes)
        self.submodels = build_submodels(config.models, self.num_classes)
        self.model = DistillationModel(self.submodels, kernels=config.get("kernels", "auto"))
        self.parallel = make_parallel(config.get("mesh"), config.train.batch_size,
                                      grad_accum_steps=int(config.train.get("grad_accum_steps", 1) or 1))
        self.mean, self.std = run_normalization(config.data, info, train_source)  # config's, or the training images'
        self.dtype = _compute_dtype(config)
        self.losses = build_losses(list(config.losses.values()))
        self.metric_labels = term_labels(config, self.losses)  # loss-term names logged (config.metric_names)
        self.sample = normalize(jnp.zeros((2,) + tuple(info.image_shape), jnp.uint8), self.mean, self.std)
        check_model_outputs(config, self.model, self.losses, self.sample, self.num_classes)
        # offline distillation: the cached model's logits come with each batch; the train step does not run it
        cached = check_teacher_cache(config)
        self.cache = teacher_cache.open_cache(config.teacher_cache) if cached else None
        self.train_model = DistillationModel({n: s for n, s in self.submodels.items() if n != cached},
                                             kernels=self.model.kernels) if cached else self.model

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
            cached=(self.cache.model,) if self.cache else (), gather_params=par.gather_params),
            par.shardings_of(state), par.shardings_of(frozen))
        release_host_memory(clear_jax_caches=True)  # initialisation's executables and garbage (host_memory.py)
        return compile_then_release(train_step, on_compiled=self._check_memory), state, frozen

    def _check_memory(self, compiled):
        """Before the first step runs: refuse a step XLA estimates larger than the devices' free memory."""
        from kdjax.runtime.compiled import memory
        from kdjax.runtime.device_memory import check_fits

        check_fits(memory(compiled), self.config, arguments_resident=True, what=f"[{self.desc}] the train step")

    def _jit_eval_step(self, state, frozen):
        par = self.parallel
        return par.jit_eval_step(make_eval_step(self.model, mean=self.mean, std=self.std, compute_dtype=self.dtype,
                                                gather_params=par.gather_params),
                                 par.shardings_of(state.params), par.shardings_of(state.batch_stats),
                                 par.shardings_of(frozen))

    def train(self, export_dir: str) -> dict:
        """Train to `train.epochs` (resuming from the newest checkpoint), evaluate, export `config.export_model` to
        `export_dir`; returns the final evaluation plus timing, or {"preempted": True, "step": n} when stopped early."""
        pipe = self._pipeline()
        train_step, state, frozen = self.build_train_step(pipe.steps_per_epoch, pipe.total_steps)
        ckpts = PhaseCheckpoints(os.path.join(self.directory, "checkpoints"),
                                 keep=int(self.config.train.keep_checkpoints))
        host_batches = iter(pipe.dataset)
        state, start = self._restore(ckpts, state, host_batches, pipe.total_steps)
        batches = self._device_batches(host_batches)
        eval_step = self._jit_eval_step(state, frozen)
        heldout = self._heldout(eval_step, state)
        runlog = RunLog(self.directory, pipe.total_steps, start, self.config.train.batch_size, self.desc,
                        enabled=jax.process_index() == 0, postfix_keys=tuple(self.metric_labels.values()))
        write_model_specs(self)  # WORKDIR/models.json: what `python -m kdjax.export` needs to export any sub-model
        # best/ by evaluation top-1 (PaddleClas' best_model); with a validation split (data.holdout) the held-out
        # evaluation keeps best/ instead, chosen on validation, never on the test split
        best = BestModel(self.directory, self.config.export_model) if heldout is None else None
        cadence = Cadence(self.config.train, pipe.steps_per_epoch, pipe.total_steps, start)
        wait, nonfinite = DataWait(), NonFinitePolicy(self.config, self.losses, self.desc, ckpts)
        meta = {"desc": self.desc, "total_steps": pipe.total_steps}
        rng = jax.random.PRNGKey(int(self.config.seed) + 1)
        loop_start, last_eval, step = time.perf_counter(), None, start
        try:
            with Preemption() as preempt:
                while step < pipe.total_steps:
                    # The order matters:
                    # 1. Take the next batch. The step is dispatched asynchronously, so the host usually waits here
                    #    while the devices still run the previous step; only waits with idle devices count as such.
                    batch = wait.next_batch(batches)
                    state, metrics = train_step(state, frozen, batch, rng)
                    wait.dispatched(state.step)
                    step += 1
                    # 2. Logging fetches the metrics, which blocks until the step is done: only every few steps.
                    #    A non-finite step was already dropped by the step itself; the policy decides whether to go on.
                    if cadence.log(step):
                        nonfinite.check(state)
                        runlog.scalars(step, self._with_counters(jax.device_get(metrics), state, pipe))
                        runlog.advance(step)
                    # 3. Evaluate before checkpointing, so that a checkpoint's step has its evaluation logged.
                    if cadence.evaluate(step):
                        last_eval = self._evaluate_periodic(state, frozen, eval_step, heldout, step)
                        runlog.scalars(step, {k: v for k, v in last_eval.items() if k != "count"}, kind="eval")
                        if best is not None:
                            best.update(step, last_eval, lambda d, **kw: self.export(d, state, frozen, **kw))
                    # 4. Stopping (SIGTERM, train.stop_after_steps) is agreed by every host before anyone saves:
                    #    one host checkpointing while another trains would deadlock both.
                    if cadence.stop_early(step):
                        preempt.requested = True
                    preempt.agree(step)
                    # 5. Checkpoint (never a non-finite state); a stop saves the step it stopped at.
                    if cadence.checkpoint(step) or preempt.requested:
                        nonfinite.check(state)
                        ckpts.save(step, state, batches, meta)  # the read-ahead iterator: counts batches taken
                    if preempt.requested and not cadence.last(step):
                        ckpts.wait()
                        runlog.message(f"[{self.desc}] stopping early: saved step {step} in {ckpts.directory}; "
                                       f"run the same command again to resume")
                        return {"preempted": True, "step": step}
        finally:
            close_all(ckpts, runlog, batches)  # each one even if another fails; reader threads / worker processes
        elapsed = time.perf_counter() - loop_start
        if last_eval is None:  # resumed at the last step
            last_eval = self._evaluate_periodic(state, frozen, eval_step, heldout, step)
        if heldout is not None:  # the last and the best-validation weights on the test split (train.final_test)
            last_eval = heldout.final(state, frozen, last_eval)
        # 6. Export: every process takes part (FSDP shards are gathered); process 0 writes.
        self.export(export_dir, state, frozen)
        return dict(self._report(last_eval, pipe, start, elapsed, wait), best=best.summary() if best is not None else None)

    def _heldout(self, eval_step, state):
        """data.holdout > 0: periodic evaluations on the held-out split, best weights kept (runtime/heldout.py)."""
        if not int(self.config.data.get("holdout", 0) or 0):
            return None
        from kdjax.data.sources import open_source
        from kdjax.runtime.heldout import HeldOutEvaluation

        splits = {"test": self.test_source,
                  "holdout": open_source(self.config.data, "holdout", channels=int(self.info.image_shape[-1]))[0]}
        par, name = self.parallel, self.config.export_model

        def evaluate(params, batch_stats, frozen, split):
            return evaluate_split(par, eval_step, params, batch_stats, frozen, splits[split],
                                  batch_size=int(self.config.train.eval_batch_size))

        def load(directory):  # the export's variables, placed like the state's
            variables, _ = export_lib.load_export(directory)
            out = {"params": par.put(variables["params"], par.shardings_of(state.params[name]))}
            if name in state.batch_stats:
                out["batch_stats"] = par.put(variables["batch_stats"], par.shardings_of(state.batch_stats[name]))
            return out

        return HeldOutEvaluation(self.directory, name, self.config.train.get("final_test", True), evaluate,
                                 self.export, load)

    def _evaluate_periodic(self, state, frozen, eval_step, heldout, step: int) -> dict:
        if heldout is None:
            return self.evaluate(state, frozen, eval_step)
        return heldout.evaluate(state, frozen, step)

    def _pipeline(self):
        """The training batches: records carry their dataset index when a loss (CRD) or the teacher cache needs it, and
        the extra input views a loss reads (MLKD's strong view)."""
        cfg = self.config
        source = self.train_source
        if self.cache is not None:
            self.cache.check_source(source)
            source = IndexedRecords(source, needed_by="teacher_cache")
        if self.losses.needs_index:
            source = IndexedRecords(source)
        return train_pipeline(source, global_batch=cfg.train.batch_size, epochs=cfg.train.epochs, seed=int(cfg.seed),
                              process_index=jax.process_index(), process_count=jax.process_count(),
                              augment=cfg.data.augment, num_threads=int(cfg.data.num_threads),
                              prefetch=int(cfg.data.prefetch), views=self.losses.views,
                              replay_cache=self._replay_cache())

    def _replay_cache(self):
        """The replay cache (K augmented views with their parameters, kdjax/data/replay_cache.py), or None."""
        return self.cache if self.cache is not None and self.cache.views else None

    def _restore(self, ckpts, state, host_batches, total_steps):
        """(state, step) of the newest good checkpoint (the data iterator moved to its position), or (state, 0)."""
        restored = ckpts.restore(self.parallel.abstract(state), host_batches)
        if restored is None:
            return state, 0
        state, _ = restored
        start = int(jax.device_get(state.step))
        if jax.process_index() == 0:
            print(f"[{self.desc}] resuming from step {start} of {total_steps} ({ckpts.directory})", flush=True)
        return state, start

    def _report(self, last_eval, pipe, start, elapsed, wait) -> dict:
        """The result of a finished loop (also written to result.json) and its one-line summary."""
        steps_run = pipe.total_steps - start
        share = (lambda t: t / elapsed if elapsed > 0 and steps_run else 0.0)
        result = dict(last_eval, steps=pipe.total_steps, seconds=elapsed, data_wait_fraction=share(wait.idle),
                      data_blocked_fraction=share(wait.blocked))
        if jax.process_index() == 0 and steps_run:
            write_json(os.path.join(self.directory, "result.json"), result)  # whole or not at all
            print(f"[{self.desc}] {steps_run} steps in {elapsed:.1f}s "
                  f"({steps_run * self.config.train.batch_size / elapsed:.0f} img/s); devices waiting for data "
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
        metrics = rename(metrics, self.metric_labels)
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad:
            metrics["nonfinite_steps"] = bad
        if self.config.data.get("skip_bad_images"):
            metrics["data/bad_images"] = pipe.bad_images.value
        return metrics

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

    def evaluate(self, state, frozen, eval_step=None) -> dict:
        """Top-1 / top-5 / mean CE of every sub-model on the test split."""
        eval_step = eval_step or self._jit_eval_step(state, frozen)
        return evaluate_split(self.parallel, eval_step, state.params, state.batch_stats, frozen, self.test_source,
                              batch_size=int(self.config.train.eval_batch_size))

    # ---- export ----------------------------------------------------------------------------------------------
    def export(self, export_dir: str, state, frozen, **spec_extra):
        """Called on every process (FSDP-sharded params are gathered with a collective); process 0 writes.
        `spec_extra` goes into the export's spec.json (e.g. best={step, top1})."""
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
        export_lib.save_export(export_dir, variables, submodel_spec(self, name, **spec_extra))


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
