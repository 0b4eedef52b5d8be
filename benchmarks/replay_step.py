"""Cached (replay-cache) step vs live-teacher step, alternating in one process:

    nice -n 10 python benchmarks/replay_step.py [--config=configs/dkd.py:cifar100] [--batch=64] [--rounds=3]
        [--steps=5]

Both steps are built as training builds them (`Trainer.build_train_step`, synthetic on-device batch): the live one
runs the frozen teacher in the step; the cached one is what a `teacher_cache` run compiles (the teacher dropped from
the step, its logits arriving with the batch as `cached_logits/<teacher>`). Rounds alternate live/cached so that load
on the shared machine hits both alike; prints each round, the median img/s of each and their ratio, and the load
average before and after. The host-side cost of a replay batch (reading stored logits, rebuilding views) is measured
separately by benchmarks/replay_accuracy.py's end-to-end runs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kdjax.runtime.xla_flags  # noqa: F401,E402

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(spec):
    import importlib.util

    path, _, arg = spec.partition(":")
    s = importlib.util.spec_from_file_location("cfg", path)
    m = importlib.util.module_from_spec(s)
    s.loader.exec_module(m)
    return m.get_config(arg or None)


def build(config, cached: bool, batch: int):
    import types

    import jax
    import numpy as np

    from kdjax.config.check import check
    from kdjax.data.sources import DatasetInfo
    from kdjax.models.distillation import DistillationModel
    from kdjax.steps import cached_key
    from kdjax.tools.bench import image_shape_for
    from kdjax.trainer import Trainer

    with config.unlocked():
        config.train.batch_size = batch
        for m in config.models.values():
            m.init = m.init or "train"  # timing needs no trained weights
    check(config, splits=(), inits=False)
    with config.unlocked():
        for m in config.models.values():
            m.init = ""
    teacher = next(n for n, m in config.models.items() if m.get("frozen"))
    shape = image_shape_for(config)
    classes = int(config.data.get("num_classes") or 10)
    with tempfile.TemporaryDirectory() as tmp:
        phase = Trainer(config, tmp, None, None, DatasetInfo(classes, None, shape, "synthetic"), "bench")
        if cached:  # what Trainer.__init__ sets up for a teacher_cache run
            phase.cache = types.SimpleNamespace(model=teacher)
            phase.train_model = DistillationModel({n: s for n, s in phase.submodels.items() if n != teacher})
        step, state, frozen = phase.build_train_step(steps_per_epoch=1000, total_steps=240000)
    rng = np.random.default_rng(0)
    host = {"image": rng.integers(0, 256, (batch,) + shape, dtype=np.uint8),
            "label": rng.integers(0, classes, (batch,)).astype(np.int32)}
    if cached:
        host[cached_key(teacher)] = rng.normal(size=(batch, classes)).astype(np.float32)
    data = phase.parallel.put_batch(host)
    key = jax.random.PRNGKey(0)
    box = {"state": state}

    def run():
        t = time.perf_counter()
        box["state"], metrics = step(box["state"], frozen, data, key)
        jax.block_until_ready((box["state"], metrics))
        return time.perf_counter() - t

    run()
    run()
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/dkd.py:cifar100")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    load0 = os.getloadavg()
    runs = {"live": build(_load(a.config), False, a.batch), "cached": build(_load(a.config), True, a.batch)}
    per = {k: [] for k in runs}
    for r in range(a.rounds):
        for name in (("live", "cached") if r % 2 == 0 else ("cached", "live")):
            times = [runs[name]() for _ in range(a.steps)]
            per[name].append(a.batch / statistics.median(times))
            print(f"round {r} {name:6s} {per[name][-1]:8.1f} img/s (median of {a.steps} steps)", flush=True)
    live, cached = statistics.median(per["live"]), statistics.median(per["cached"])
    ratios = [c / l for c, l in zip(per["cached"], per["live"])]
    print(f"{a.config} batch {a.batch}: live {live:.1f} img/s, cached {cached:.1f} img/s, cached/live "
          f"{cached / live:.2f}x (per round {', '.join(f'{x:.2f}' for x in ratios)}); load average "
          f"{load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after", flush=True)


if __name__ == "__main__":
    main()
