"""What a run shows and leaves behind: a progress bar with images/s and ETA, JSON-lines metrics, TensorBoard."""

import json
import os
import sys
import threading
import time

from tqdm import tqdm


def _drop_records_after(path: str, step: int):
    """Keep only the records up to `step`, so resumed runs do not log replayed steps twice. Lines that are not
    JSON records (cut short by a kill, stray bytes) are dropped: the log must never block a resume."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            continue
        if isinstance(record, dict) and isinstance(record.get("step", 0), (int, float)) \
                and record.get("step", 0) <= step and line.endswith(b"\n"):
            keep.append(line)
    if len(keep) != len(lines):
        from kdjax.runtime.preemption import writing

        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with writing(), open(tmp, "wb") as f:
                f.writelines(keep)
                f.flush()
                os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise


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
        path = self._path = os.path.join(directory, "metrics.jsonl")
        _drop_records_after(path, start_step)  # a resumed run replays the steps after its checkpoint
        self._jsonl = open(path, "a")
        try:
            from tensorboardX import SummaryWriter

            _quiet_tensorboard_thread_errors()
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
        try:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        except OSError as e:  # a full disk: name the file
            raise OSError(e.errno, e.strerror, self._path) from None
        if self._tb is not None and not tensorboard_alive(self._tb):
            _close_tensorboard(self._tb, "its writer thread failed")
            self._tb = None
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
            try:
                self._jsonl.close()
            except OSError:  # a full disk: the records written so far are complete lines; the failure was reported
                pass
            self._jsonl = None
        if self._tb is not None:
            _close_tensorboard(self._tb)
            self._tb = None


def _quiet_tensorboard_thread_errors():
    """tensorboardX's writer thread dies on a write error (a full disk) with a traceback; RunLog notices the dead
    thread and says so in one line, so drop exactly those (OSError in a tensorboardX thread)."""
    previous = threading.excepthook
    if getattr(previous, "_kdjax_filter", False):
        return

    def hook(args):
        if issubclass(args.exc_type, OSError) and type(args.thread).__module__.startswith("tensorboardX"):
            return
        previous(args)

    hook._kdjax_filter = True
    threading.excepthook = hook


def _event_writers(tb):
    """The EventFileWriters of a tensorboardX SummaryWriter (attribute names of tensorboardX 2.x; none if absent)."""
    writers = getattr(tb, "all_writers", None) or {}
    return [w.event_writer for w in writers.values() if getattr(w, "event_writer", None) is not None]


def tensorboard_alive(tb) -> bool:
    """False once a writer thread died (a full disk): adding events would then block forever on its full queue."""
    return all(getattr(e, "_worker", None) is None or e._worker.is_alive() for e in _event_writers(tb))


def _close_tensorboard(tb, reason: str = ""):
    """Close the TensorBoard writer. TensorBoard is optional (metrics.jsonl is the record): when writing failed
    (a full disk), say so in one line and make sure neither close() nor its exit handler waits on the dead writer
    thread or prints a traceback."""
    if tensorboard_alive(tb) and not reason:
        try:
            tb.close()
            return
        except OSError as e:
            reason = e.strerror or str(e)
    print(f"kdjax: warning: TensorBoard events stopped ({reason or 'its writer failed'}); metrics.jsonl has every "
          f"record", file=sys.stderr, flush=True)
    for events in _event_writers(tb):
        try:
            events._ev_writer.close()
        except Exception:  # the same full disk
            pass
        events._closed = True  # its close() (run again at exit) does nothing now
