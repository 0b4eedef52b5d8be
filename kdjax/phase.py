"""One training phase: build the DistillationModel, restore or initialise, train, evaluate, export.

`train.py` runs a phase per model that must be trained first (init="train") and then the distillation phase.
"""

import json
import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from kdjax import export as export_lib
from kdjax.config_check import check_captures
from kdjax.checkpointing import PhaseCheckpoints, abstract_like
from kdjax.data.pipeline import train_pipeline
from kdjax.distill_model import DistillationModel, build_submodels, normalize
from kdjax.errors import KdjaxError
from kdjax.evaluate import evaluate
from kdjax.init_weights import check_variables_match, load_init
from kdjax.losses import build_losses
from kdjax.optim import build_optimizer
from kdjax.parallel import make_parallel
from kdjax.run_log import RunLog
from kdjax.steps import LOSS_PARAMS, create_state, make_eval_step, make_train_step

log = logging.getLogger("kdjax")


class NonFiniteLoss(KdjaxError):
    pass


class _Preemption:
    """SIGTERM → finish the current step, checkpoint, exit cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners)
            self._previous = None
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


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
        self.parallel = make_parallel(config.get("mesh"), config.train.batch_size)
        self.mean, self.std = tuple(config.data.mean), tuple(config.data.std)
        self.dtype = _compute_dtype(config)
        self.losses = build_losses(list(config.losses.values()))
        self.sample = normalize(jnp.zeros((2,) + tuple(info.image_shape), jnp.uint8), self.mean, self.std)
        check_captures(config, {n: self.model.feature_names(n, self.sample) for n in self.model.names})

    # ---- variables -------------------------------------------------------------------------------------------
    def initial_variables(self):
        """(trainable params, batch_stats, frozen variables), inits loaded, loss modules initialised."""
        rng = jax.random.PRNGKey(int(self.config.seed))
        fresh = self.model.init_variables(rng, self.sample)
        cache = os.path.join(self.directory, "imported")
        for name, sub in self.submodels.items():
            if sub.init:
                loaded = load_init(name, sub, cache)
                check_variables_match(name, fresh[name], loaded, sub.init)
                fresh[name] = jax.tree.map(lambda ref, v: np.asarray(v, dtype=ref.dtype), fresh[name],
                                           {k: loaded[k] for k in fresh[name]})
        frozen = {n: fresh[n] for n in self.model.frozen}
        params = {n: fresh[n]["params"] for n in self.model.trainable}
        batch_stats = {n: fresh[n]["batch_stats"] for n in self.model.trainable if "batch_stats" in fresh[n]}
        outputs, _ = self.model.apply(params, batch_stats, frozen, self.sample, train=False, rng=rng)
        loss_params = self.losses.init(jax.random.fold_in(rng, 99), outputs)
        if loss_params:
            params[LOSS_PARAMS] = loss_params
        return params, batch_stats, frozen

    # ---- training --------------------------------------------------------------------------------------------
    def train(self, export_dir: str) -> dict:
        cfg, tcfg = self.config, self.config.train
        pipe = train_pipeline(self.train_source, global_batch=tcfg.batch_size, epochs=tcfg.epochs,
                              seed=int(cfg.seed), process_index=jax.process_index(),
                              process_count=jax.process_count(), augment=cfg.data.augment,
                              num_threads=int(cfg.data.num_threads), prefetch=int(cfg.data.prefetch))
        tx, schedule = build_optimizer(cfg.optim, pipe.steps_per_epoch, pipe.total_steps)
        params, batch_stats, frozen = self.initial_variables()
        state = create_state(params, batch_stats, tx)
        par = self.parallel
        state, frozen = par.replicate(state), par.replicate(frozen)
        ckpts = PhaseCheckpoints(os.path.join(self.directory, "checkpoints"), keep=int(tcfg.keep_checkpoints))
        data_iter = iter(pipe.dataset)
        restored = ckpts.restore(abstract_like(state, par.replicated()), data_iter)
        start = 0
        is_main = jax.process_index() == 0
        if restored is not None:
            state, _ = restored
            start = int(jax.device_get(state.step))
            if is_main:
                print(f"[{self.desc}] resuming from step {start} of {pipe.total_steps} ({ckpts.directory})",
                      flush=True)
        train_step = par.jit_train_step(make_train_step(
            self.model, self.losses, tx, schedule, mean=self.mean, std=self.std,
            steps_per_epoch=pipe.steps_per_epoch, compute_dtype=self.dtype))
        eval_step = par.jit_eval_step(make_eval_step(self.model, mean=self.mean, std=self.std,
                                                     compute_dtype=self.dtype))
        runlog = RunLog(self.directory, pipe.total_steps, start, tcfg.batch_size, self.desc, enabled=is_main)
        rng = jax.random.PRNGKey(int(cfg.seed) + 1)
        eval_every = max(1, int(round(float(tcfg.eval_every_epochs) * pipe.steps_per_epoch)))
        meta = {"desc": self.desc, "total_steps": pipe.total_steps}
        wait, loop_start, last_eval = 0.0, time.perf_counter(), None
        stop_after = int(tcfg.get("stop_after_steps", 0) or 0)
        step = start
        try:
            with _Preemption() as preempt:
                while step < pipe.total_steps:
                    t0 = time.perf_counter()
                    batch = par.put_batch(next(data_iter))
                    wait += time.perf_counter() - t0
                    state, metrics = train_step(state, frozen, batch, rng)
                    step += 1
                    last = step == pipe.total_steps
                    if step % int(tcfg.log_every_steps) == 0 or last:
                        self._check_finite(state, metrics, ckpts)
                        runlog.scalars(step, jax.device_get(metrics))
                        runlog.advance(step)
                    if step % eval_every == 0 or last:
                        last_eval = evaluate(par, eval_step, state.params, state.batch_stats, frozen,
                                             self.test_source, batch_size=int(tcfg.eval_batch_size))
                        runlog.scalars(step, {k: v for k, v in last_eval.items() if k != "count"}, kind="eval")
                    if step % int(tcfg.checkpoint_every_steps) == 0 or last or preempt.requested:
                        self._check_finite(state, metrics, ckpts)
                        ckpts.save(step, state, data_iter, meta)
                    if stop_after and step - start >= stop_after and not last:
                        preempt.requested = True
                        ckpts.save(step, state, data_iter, meta)
                    if preempt.requested and not last:
                        ckpts.wait()
                        runlog.message(f"[{self.desc}] stopping early: saved step {step} in {ckpts.directory}; "
                                       f"run the same command again to resume")
                        return {"preempted": True, "step": step}
        finally:
            ckpts.close()
            runlog.close()
        elapsed = time.perf_counter() - loop_start
        if last_eval is None:
            last_eval = evaluate(par, eval_step, state.params, state.batch_stats, frozen, self.test_source,
                                 batch_size=int(tcfg.eval_batch_size))
        if is_main:
            self.export(export_dir, state, frozen)
        steps_run = pipe.total_steps - start
        result = dict(last_eval, steps=pipe.total_steps, seconds=elapsed,
                      data_wait_fraction=wait / elapsed if elapsed > 0 and steps_run else 0.0)
        if is_main and steps_run:
            with open(os.path.join(self.directory, "result.json"), "w") as f:
                json.dump(result, f, indent=2)
            print(f"[{self.desc}] {steps_run} steps in {elapsed:.1f}s "
                  f"({steps_run * tcfg.batch_size / elapsed:.0f} img/s); waiting for data "
                  f"{100 * result['data_wait_fraction']:.1f}% of the time", flush=True)
        return result

    def _check_finite(self, state, metrics, ckpts):
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad == 0:
            return
        policy, limit = self.config.train.nonfinite, int(self.config.train.max_skipped)
        if policy == "skip" and bad <= limit:
            return
        first = int(jax.device_get(state.first_nonfinite))
        host = jax.device_get(metrics)
        entries = [k for k, v in host.items() if k.startswith("loss") and not np.isfinite(v)]
        good = ckpts.latest_step()
        raise NonFiniteLoss(
            f"[{self.desc}] the loss became non-finite at step {first + 1}"
            + (f" (entries non-finite at the last logged step: {', '.join(entries)})" if entries else "")
            + (f"; {bad} steps skipped, over train.max_skipped={limit}" if policy == "skip" else "")
            + f". No update from those steps was applied and no NaN checkpoint was written; last good checkpoint: "
            + (f"step {good} in {ckpts.directory}" if good is not None else "none yet")
            + ". Lower optim.lr, check the loss weights, or set train.nonfinite=skip.")

    def restore_latest(self):
        """(state, frozen, step) from the newest good checkpoint of this phase, for evaluation."""
        tx, _ = build_optimizer(self.config.optim, 1, 1)
        params, batch_stats, frozen = self.initial_variables()
        state = create_state(params, batch_stats, tx)
        par = self.parallel
        ckpts = PhaseCheckpoints(os.path.join(self.directory, "checkpoints"))
        try:
            restored = ckpts.restore(abstract_like(state, par.replicated()))
        finally:
            ckpts.close()
        if restored is None:
            return None
        state = restored[0]
        return state, par.replicate(frozen), int(jax.device_get(state.step))

    def evaluate(self, state, frozen) -> dict:
        eval_step = self.parallel.jit_eval_step(make_eval_step(self.model, mean=self.mean, std=self.std,
                                                               compute_dtype=self.dtype))
        return evaluate(self.parallel, eval_step, state.params, state.batch_stats, frozen, self.test_source,
                        batch_size=int(self.config.train.eval_batch_size))

    # ---- export ----------------------------------------------------------------------------------------------
    def export(self, export_dir: str, state, frozen):
        name = self.config.export_model
        if name in frozen:
            variables = jax.device_get(frozen[name])
        else:
            variables = {"params": jax.device_get(state.params[name])}
            if name in state.batch_stats:
                variables["batch_stats"] = jax.device_get(state.batch_stats[name])
        sub = self.submodels[name]
        kwargs = {k: v for k, v in sub.kwargs.items() if k != "num_classes"}
        spec = export_lib.make_spec(sub.arch, kwargs, self.num_classes, self.info.image_shape, self.mean, self.std,
                                    self.info.label_names, model_name=name, dataset=self.config.data.name)
        export_lib.save_export(export_dir, variables, spec)
