"""The pieces a training loop is made of, each a small object the loop in kdjax/trainer.py calls by name:

  Cadence         which steps log, evaluate, checkpoint, or stop early (train.log_every_steps, eval_every_epochs,
                  checkpoint_every_steps, stop_after_steps)
  DataWait        how long the devices waited for data (a wait counts only while they had nothing to run)
  NonFinitePolicy what a NaN/inf step does (train.nonfinite: stop, or skip up to train.max_skipped), and the message
"""

import time

import jax

from kdjax.errors import KdjaxError


class Cadence:
    """When the loop does what, from `config.train` and the pipeline's step counts."""

    def __init__(self, train_cfg, steps_per_epoch: int, total_steps: int, start: int):
        self.total_steps, self.start = total_steps, start
        self.log_every = int(train_cfg.log_every_steps)
        self.eval_every = max(1, int(round(float(train_cfg.eval_every_epochs) * steps_per_epoch)))
        self.checkpoint_every = int(train_cfg.checkpoint_every_steps)
        self.stop_after = int(train_cfg.get("stop_after_steps", 0) or 0)

    def last(self, step: int) -> bool:
        return step == self.total_steps

    def log(self, step: int) -> bool:
        return step % self.log_every == 0 or self.last(step)

    def evaluate(self, step: int) -> bool:
        return step % self.eval_every == 0 or self.last(step)

    def checkpoint(self, step: int) -> bool:
        return step % self.checkpoint_every == 0 or self.last(step)

    def stop_early(self, step: int) -> bool:
        """`train.stop_after_steps`: this invocation has run its share (time-sliced jobs)."""
        return bool(self.stop_after) and step - self.start >= self.stop_after and not self.last(step)


class DataWait:
    """Time spent waiting for the next batch.

    `idle` counts a wait only when the step dispatched before it had already finished by the time the batch arrived
    (the devices sat idle, at most that long); `blocked` counts every wait of the loop thread, most of which overlaps
    the asynchronously running previous step."""

    def __init__(self):
        self.idle = self.blocked = 0.0
        self._in_flight = None

    def next_batch(self, batches):
        t0 = time.perf_counter()
        batch = next(batches)
        waited = time.perf_counter() - t0
        self.blocked += waited
        if self._in_flight is None or self._in_flight.is_ready():
            self.idle += waited
        return batch

    def dispatched(self, output: jax.Array):
        """The step just dispatched; `output` becomes ready when it has finished."""
        self._in_flight = output


class NonFiniteLoss(KdjaxError):
    pass


_CHECK_WORDS = {"loss": "the total loss", "grads": "the gradients",
                "update": "the updated parameters / optimizer state / BatchNorm statistics"}


class NonFinitePolicy:
    """`train.nonfinite`: the step already dropped every non-finite update (steps.py); this decides whether the run
    goes on (skip, up to train.max_skipped such steps) or stops with a message naming the culprit."""

    def __init__(self, config, losses, desc: str, checkpoints):
        self.config, self.losses, self.desc, self.checkpoints = config, losses, desc, checkpoints
        self.policy, self.limit = config.train.nonfinite, int(config.train.max_skipped)

    def check(self, state):
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad == 0 or (self.policy == "skip" and bad <= self.limit):
            return
        self.checkpoints.wait()  # so that "last good checkpoint" names a committed one
        raise NonFiniteLoss(self.message(int(jax.device_get(state.first_nonfinite)) + 1, bad,
                                         jax.device_get(state.nonfinite_counts or {})))

    def message(self, first_step: int, bad_steps: int, counts: dict) -> str:
        """Why the run stops: the first bad step, what went non-finite there (loss terms named by their
        `config.losses.<name>` entry), what was (not) saved, and what to change."""
        fields = {}
        for i, name in enumerate(self.config.losses):
            for unit in self.losses.entry_term_names(i):
                for term in unit:
                    fields[f"loss/{term}"] = f"losses.{name}"
        counts = {k: int(v) for k, v in dict(counts).items() if int(v)}
        terms = [f"{k} (config.{fields[k]})" if k in fields else k for k in counts if k.startswith("loss/")]
        what = terms + [_CHECK_WORDS[k] for k in ("loss", "grads", "update") if k in counts]
        entries = sorted({fields[k] for k in counts if k in fields})
        hint = "lower optim.lr"
        if entries:
            hint = f"check {' / '.join(e + '.weight' for e in entries)} and the inputs of those losses, or " + hint
        good_step, directory = self.checkpoints.latest_step(), self.checkpoints.directory
        skip = self.policy == "skip"
        return (f"[{self.desc}] training became non-finite (NaN/inf) at step {first_step}"
                + (f": {', '.join(what)}" if what else "")
                + (f". {bad_steps} step{'s were' if bad_steps != 1 else ' was'} skipped, more than "
                   f"train.max_skipped={self.limit}" if skip
                   else f" ({bad_steps} such step{'s' if bad_steps != 1 else ''} so far)")
                + ". No update from those steps was applied and no NaN/inf checkpoint was written; last good "
                + f"checkpoint: {f'step {good_step} in {directory}' if good_step is not None else 'none yet'}"
                + f". To fix it, {hint} and start over with --restart (moves this run aside) or a new --workdir"
                + ("; or resume from that checkpoint with a higher --config.train.max_skipped." if skip
                   else "; or resume from that checkpoint dropping such steps: add --config.train.nonfinite=skip "
                        "(up to train.max_skipped of them)."))
