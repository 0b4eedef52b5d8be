"""Evaluation on the held-out validation split (`data.holdout` > 0), and the run's best-validation weights.

With a held-out split, every periodic evaluation of a run reads it (logged as "val/<model>/top1", ...), and the
export model's weights at the evaluation with the highest validation top-1 are kept in `<run>/best/` (an export
dir, with best.json: its step and accuracy; the earliest evaluation wins a tie). They are written when found, so a
run stopped and resumed keeps its best. At the end, `train.final_test` decides what the test split sees: the last
weights and the best-validation weights, evaluated once each (the run's result, "<model>/top1" and
"best/<model>/top1"); or nothing at all (hyper-parameter trials: their result is the validation only). The test
split never decides anything here.
"""

import json
import os

import jax

from kdjax.data.holdout import HOLDOUT
from kdjax.runtime.workdir import write_json

BEST_DIR = "best"
BEST_FILE = "best.json"


class HeldOutEvaluation:
    """Periodic evaluations of `trainer`'s run on the held-out split, tracking the export model's best weights."""

    def __init__(self, trainer):
        from kdjax.data.sources import open_source

        self.trainer = trainer
        self.source, _ = open_source(trainer.config.data, HOLDOUT, channels=int(trainer.info.image_shape[-1]))
        self.name = trainer.config.export_model
        self.dir = os.path.join(trainer.directory, BEST_DIR)
        self.best = _read(os.path.join(trainer.directory, BEST_FILE))  # {"step", "val_top1"} or None

    def evaluate(self, state, frozen, eval_step, step: int) -> dict:
        """Evaluate on the held-out split; keep the weights when they are the best so far. Keys "val/..."."""
        from kdjax.trainer import evaluate_split

        t = self.trainer
        result = evaluate_split(t.parallel, eval_step, state.params, state.batch_stats, frozen, self.source,
                                batch_size=int(t.config.train.eval_batch_size))
        top1 = result[f"{self.name}/top1"]
        if self.name not in frozen and (self.best is None or top1 > self.best["val_top1"]):
            t.export(self.dir, state, frozen)
            self.best = {"step": int(step), "val_top1": float(top1)}
            if jax.process_index() == 0:
                write_json(os.path.join(t.directory, BEST_FILE), self.best)
        return {f"val/{k}": v for k, v in result.items()}

    def final(self, state, frozen, eval_step, last_val: dict) -> dict:
        """The run's result: the last validation, the best one, and (train.final_test) the test split evaluated
        once with the last weights and once with the best-validation weights."""
        out = dict(last_val)
        if self.best is not None:
            out["best_step"], out[f"best/val/{self.name}/top1"] = self.best["step"], self.best["val_top1"]
        if not self.trainer.config.train.get("final_test", True):
            return out
        out.update(self.trainer.evaluate(state, frozen, eval_step))
        if self.best is not None:
            test = self.trainer.evaluate(self._best_weights(state), frozen, eval_step)
            out.update({f"best/{k}": v for k, v in test.items() if k.startswith(self.name + "/")})
        return out

    def _best_weights(self, state):
        """(params, batch_stats) of the last state with the export model's replaced by its best-validation ones."""
        from kdjax.weights.export_dir import load_export

        variables, _ = load_export(self.dir)
        par, params, stats = self.trainer.parallel, dict(state.params), dict(state.batch_stats)
        params[self.name] = par.put(variables["params"], par.shardings_of(state.params[self.name]))
        if self.name in stats:
            stats[self.name] = par.put(variables["batch_stats"], par.shardings_of(state.batch_stats[self.name]))
        return _Weights(params, stats)


class _Weights:
    """What Trainer.evaluate reads of a state: params and batch_stats."""

    def __init__(self, params, batch_stats):
        self.params, self.batch_stats = params, batch_stats


def _read(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
