"""Evaluation on the held-out validation split (`data.holdout` > 0), and the run's best-validation weights.

With a held-out split, every periodic evaluation of a run reads it (logged as "val/<model>/top1", ...), and the
export model's weights at the evaluation with the highest validation top-1 are kept in `<run>/best/` (an export
dir, with best.json: its step and accuracy; the earliest evaluation wins a tie). They are written when found, so a
run stopped and resumed keeps its best. At the end, `train.final_test` decides what the test split sees: the last
weights and the best-validation weights, evaluated once each (the run's result, "<model>/top1" and
"best/<model>/top1"); or nothing at all (hyper-parameter trials: their result is the validation only). The test
split never decides anything here.

The Trainer hands in what this needs (kdjax/trainer.py `_heldout`), so this module stays in the runtime layer.
"""

import json
import os
from typing import Callable

import jax

from kdjax.runtime.workdir import write_json

BEST_DIR = "best"
BEST_FILE = "best.json"


class HeldOutEvaluation:
    """Periodic evaluations on the held-out split, tracking the export model `name`'s best weights.

    evaluate(params, batch_stats, frozen, split) → metrics dict, split "holdout" or "test";
    export(directory, state, frozen) writes the export model; load(directory) → its {"params", "batch_stats"}
    as device arrays placed like the state's."""

    def __init__(self, directory: str, name: str, final_test: bool, evaluate: Callable, export: Callable,
                 load: Callable):
        self.directory, self.name, self.final_test = directory, name, bool(final_test)
        self._evaluate, self._export, self._load = evaluate, export, load
        self.dir = os.path.join(directory, BEST_DIR)
        self.best = _read(os.path.join(directory, BEST_FILE))  # {"step", "val_top1"} or None

    def evaluate(self, state, frozen, step: int) -> dict:
        """Evaluate on the held-out split; keep the weights when they are the best so far. Keys "val/..."."""
        result = self._evaluate(state.params, state.batch_stats, frozen, "holdout")
        top1 = result[f"{self.name}/top1"]
        if self.name not in frozen and (self.best is None or top1 > self.best["val_top1"]):
            self._export(self.dir, state, frozen)
            self.best = {"step": int(step), "val_top1": float(top1)}
            if jax.process_index() == 0:
                write_json(os.path.join(self.directory, BEST_FILE), self.best)
        return {f"val/{k}": v for k, v in result.items()}

    def final(self, state, frozen, last_val: dict) -> dict:
        """The run's result: the last validation, the best one, and (train.final_test) the test split evaluated
        once with the last weights and once with the best-validation weights."""
        out = dict(last_val)
        if self.best is not None:
            out["best_step"], out[f"best/val/{self.name}/top1"] = self.best["step"], self.best["val_top1"]
        if not self.final_test:
            return out
        out.update(self._evaluate(state.params, state.batch_stats, frozen, "test"))
        if self.best is not None:
            best = self._load(self.dir)
            params, stats = dict(state.params), dict(state.batch_stats)
            params[self.name] = best["params"]
            if self.name in stats:
                stats[self.name] = best["batch_stats"]
            test = self._evaluate(params, stats, frozen, "test")
            out.update({f"best/{k}": v for k, v in test.items() if k.startswith(self.name + "/")})
        return out


def _read(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
