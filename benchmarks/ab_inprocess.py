"""In-process A/B of XLA compiler options on kdjax's real train step (noise-robust on a shared machine).

    python benchmarks/ab_inprocess.py --rounds=10 'A={}' 'B={"xla_cpu_use_fusion_emitters": false}' ...

Builds the step once (`Trainer.build_train_step`, as kdjax.tools.bench does), compiles it once per option set
(`Lowered.compile(options)`: per-executable XLA debug options), then runs the executables in turn, one step
each, round after round, so every variant sees the same machine load. Prints per variant the median step
time and the median over rounds of (variant step time / first variant step time).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kdjax.runtime.xla_flags  # noqa: F401,E402

import argparse
import json
import statistics
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/dkd.py:cifar100")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("variants", nargs="+", help="NAME=JSON options")
    args = ap.parse_args()
    import jax
    import numpy as np
    from ml_collections import config_flags  # noqa: F401

    from kdjax.data.sources import DatasetInfo
    from kdjax.trainer import Trainer
    sys.path.insert(0, ".")
    from tests.conftest import load_config

    path, _, preset = args.config.partition(":")
    config = load_config(path, preset or None)
    with config.unlocked():
        config.train.batch_size = args.batch
        for m in config.models.values():
            m.init = ""
    from kdjax.tools.bench import image_shape_for
    shape = image_shape_for(config)
    classes = int(config.data.get("num_classes") or 10)
    with tempfile.TemporaryDirectory() as tmp:
        phase = Trainer(config, tmp, None, None, DatasetInfo(classes, None, shape, "synthetic"), "ab")
        step, state, frozen = phase.build_train_step(1000, 240000)
    r = np.random.default_rng(0)
    batch = phase.parallel.put_batch({"image": r.integers(0, 256, (args.batch,) + shape, dtype=np.uint8),
                                      "label": r.integers(0, classes, (args.batch,)).astype(np.int32)})
    rng = jax.random.PRNGKey(0)
    lowered = step.lower(state, frozen, batch, rng)
    names, execs, states = [], [], []
    for v in args.variants:
        name, _, opts = v.partition("=")
        t = time.perf_counter()
        execs.append(lowered.compile(json.loads(opts or "{}")))
        print(f"compiled {name} in {time.perf_counter() - t:.1f}s", flush=True)
        names.append(name)
        states.append(jax.tree.map(lambda a: a.copy(), state))
    times = {n: [] for n in names}
    for rd in range(args.rounds + 1):
        order = list(range(len(names)))
        order = order[rd % len(order):] + order[:rd % len(order)]
        for i in order:
            t = time.perf_counter()
            states[i], m = execs[i](states[i], frozen, batch, rng)
            jax.block_until_ready(states[i])
            if rd:  # round 0 warms up
                times[names[i]].append(time.perf_counter() - t)
    base = times[names[0]]
    for n in names:
        ratios = [a / b for a, b in zip(times[n], base)]
        print(f"{n:>12}: median step {statistics.median(times[n]):.3f}s  time ratio to {names[0]} "
              f"{statistics.median(ratios):.3f}  (min step {min(times[n]):.3f}s)", flush=True)


if __name__ == "__main__":
    main()
