"""The best model of a run, like PaddleClas' best_model: after every evaluation whose top-1 of the exported model
(`config.export_model`) beats every earlier one, that model is exported to `<phase dir>/best/` (beside `export/`),
its spec carrying `best: {step, top1}`. Written with `save_export`, so a kill mid-write leaves the previous best
(once save_export replaces directories atomically). A resumed run starts from the recorded best, so it never
replaces a better model with a worse one.
"""

import os
from typing import Optional

from kdjax.weights.from_workdir import BEST_DIR, best_record


class BestModel:
    def __init__(self, directory: str, model_name: str):
        self.directory = os.path.join(directory, BEST_DIR)
        self.model_name = model_name
        self.key = f"{model_name}/top1"
        record = best_record(directory)
        self.record: Optional[dict] = record if record and record.get("model") == model_name else None

    def update(self, step: int, result: dict, export) -> bool:
        """Export (via `export(directory, best=...)`, run on every process) when `result` beats the best so far."""
        top1 = float(result[self.key])
        if self.record is not None and top1 <= float(self.record["top1"]):
            return False
        best = {"step": int(step), "top1": top1, "count": int(result.get("count", 0))}
        export(self.directory, best=best)
        self.record = dict(best, model=self.model_name)
        return True

    def summary(self) -> Optional[dict]:
        return None if self.record is None else dict(self.record, dir=self.directory)
