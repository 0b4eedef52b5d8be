"""kdjax's real train step with XLA's convolutions against the oneDNN FFI kernels, step by step in ONE process.

    python benchmarks/onednn_step_ab.py [--config=configs/dkd.py:cifar100] [--batch=64] [--rounds=15]

Builds the step twice (`kdjax.tools.bench.StepBench`, as training builds it): once with XLA's convolutions, once with
KDJAX_CONV=onednn. Then, round after round, times one step of each variant in a rotating order:

  xla            XLA's convolutions (kdjax's default)
  onednn         oneDNN kernels, batch chunks on XLA's thread pool (one chunk per thread; the default)
  onednn-c2      the same, two chunks per thread (finer work-sharing when a thread is descheduled)
  onednn-omp     the same kernels with oneDNN's OpenMP threads

(the last three run the same executable; the mode is switched between steps). Prints the median step time of each
and its ratio to `xla`, and one JSON line with every time. Separate processes (compare.sh) are the fairer test of
memory; this is the fairer test of speed on a noisy machine.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import kdjax.runtime.xla_flags  # noqa: F401,E402

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402


def load_config(spec):
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/dkd.py:cifar100")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    from kdjax.tools.bench import StepBench
    from kdjax.kernels import onednn
    from kdjax.kernels import conv as fast_conv

    if not onednn.available():
        sys.exit(f"oneDNN kernels unavailable: {onednn.why_unavailable()}")
    benches = {}
    for backend in ("xla", "onednn"):
        fast_conv.BACKEND = backend  # read when the step is traced: on its first call
        config = load_config(args.config)
        with config.unlocked():  # the presets' frozen teacher must name an init; 'train' passes the check
            for m in config.models.values():
                if m.frozen and not m.init:
                    m.init = "train"
        benches[backend] = StepBench(config, batch=args.batch, config_name=args.config)
        for _ in range(1 + args.warmup):
            benches[backend].step()
    fast_conv.BACKEND = "xla"
    variants = {"xla": ("xla", None, 1), "onednn": ("onednn", "xla", 1), "onednn-c2": ("onednn", "xla", 2),
                "onednn-omp": ("onednn", "omp", 1)}
    times = {v: [] for v in variants}
    names = list(variants)
    for r in range(args.rounds):
        for v in names[r % len(names):] + names[:r % len(names)]:
            bench, threading, chunks = variants[v]
            if threading:
                onednn.set_threading(threading)
                onednn.set_chunks_per_thread(chunks)
            times[v].append(benches[bench].step())
    onednn.set_threading("xla")
    onednn.set_chunks_per_thread(1)
    base = statistics.median(times["xla"])
    print(f"{'variant':<12} {'step ms':>8} {'img/s':>7} {'vs xla':>7}   (median of {args.rounds}, batch {args.batch})")
    for v in names:
        med = statistics.median(times[v])
        print(f"{v:<12} {1000 * med:>8.1f} {args.batch / med:>7.2f} {base / med:>6.2f}x")
    print(json.dumps({"config": args.config, "batch": args.batch, "onednn": onednn.info(),
                      "step_s": {v: [round(t, 5) for t in ts] for v, ts in times.items()}}))


if __name__ == "__main__":
    main()
