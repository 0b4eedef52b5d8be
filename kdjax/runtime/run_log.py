"""What a run shows and leaves behind: a progress bar with images/s and ETA, JSON-lines metrics, TensorBoard."""

import json
import os
import sys
import time

from tqdm import tqdm


def _drop_records_after(path: str, step: int):
    """Keep only the records up to `step`, so resumed runs do not log replayed steps twice."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    if len(keep) != len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, path)


class RunLog:
    """Writes only on the process that owns logging (process 0 on multi-host runs)."""

    def __init__(self, directory: str, total_steps: int, start_step: int, global_batch: int, desc: str,
                 enabled: bool = True, postfix_keys=()):
        """`postfix_keys`: metrics (loss terms) the progress line shows after images/s and the total loss."""
        self.enabled = enabled
        self.postfix_keys = tuple(postfix_keys)
        self.global_batch = global_batch
        self._jsonl = None
        self._tb = None
        self._bar = None
        if not enabled:
            return
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "metrics.jsonl")
        _drop_records_after(path, start_step)  # a resumed run replays the steps after its checkpoint
        self._jsonl = open(path, "a")
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(directory, "tensorboard"), purge_step=start_step or None)
        except ImportError:  # optional: metrics.jsonl is always written
            self._tb = None
        self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step", dynamic_ncols=True,
                         file=sys.stderr, mininterval=1.0, smoothing=0.1)
        self._last_time = time.perf_counter()
        self._last_step = start_step

    def advance(self, step: int):
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def scalars(self, step: int, metrics: dict, kind: str = "train"):
        """Record metrics (host floats). Train records also refresh the bar's images/s."""
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, "time": time.time()}
        record.update({k: float(v) for k, v in metrics.items()})
        if kind == "train":
            now = time.perf_counter()
            if step > self._last_step:
                record["images_per_sec"] = (step - self._last_step) * self.global_batch / (now - self._last_time)
                self._bar.set_postfix(self._postfix(record))
            self._last_time, self._last_step = now, step
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "kind", "time"):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def _postfix(self, record: dict) -> dict:
        shown = {"img/s": f"{record['images_per_sec']:.0f}", "loss": f"{record['loss']:.4f}"}
        shown.update({k: f"{record[k]:.4f}" for k in self.postfix_keys if k in record})
        return shown

    def message(self, text: str):
        if self.enabled:
            (self._bar.write if self._bar is not None else print)(text)

    def close(self):
        if self._bar is not None:
            self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
