"""The oneDNN FFI kernels alone, per convolution of the cifar100 preset: wall and CPU milliseconds per call.

    python benchmarks/onednn_kernels_only.py [--library=PATH] [--threading=xla|omp] [--reps=5]

One JSON line: oneDNN's version / runtime / ISA and, per conv shape and kind (fwd, dX, dW), the median wall and
CPU (user + sys) milliseconds over --reps calls. --library loads another build of conv.cc than the installed one,
e.g. against the PyPI `onednn` wheel (benchmarks/README.md). Run it alternately for the builds to compare: one
process per build, as two oneDNN libraries cannot serve the same FFI targets in one process. CPU time is the
fairer measure on a loaded machine (it does not count time the process waits for a core; it does count spinning).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import kdjax.runtime.xla_flags  # noqa: F401,E402

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", default="")
    ap.add_argument("--threading", default="xla", choices=["xla", "omp"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    from kdjax.kernels import onednn

    import kernels

    if args.library:
        onednn.LIBRARY = os.path.abspath(args.library)
    if not onednn.available():
        sys.exit(onednn.why_unavailable())
    onednn.set_threading(args.threading)
    rng = np.random.default_rng(0)
    wall, cpu = {}, {}
    for c in kernels.preset_convs(args.batch):
        x_shape, w_shape, s, p = c
        x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
        w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
        strides, pad = (s, s), ((p, p), (p, p))
        dy = jnp.ones_like(onednn.conv2d(x, w, strides, pad))
        fns = {"fwd": (jax.jit(lambda x, w: onednn.conv2d(x, w, strides, pad)), (x, w)),
               "dX": (jax.jit(lambda x, w, dy: onednn.input_grad(dy, w, x.shape, strides, pad, 1)), (x, w, dy)),
               "dW": (jax.jit(lambda x, w, dy: onednn.weight_grad(x, dy, w.shape, strides, pad, 1)), (x, w, dy))}
        for kind, (f, ops) in fns.items():
            f(*ops).block_until_ready()
            ts, cs = [], []
            for _ in range(args.reps):
                c0, t0 = _cpu_s(), time.perf_counter()
                f(*ops).block_until_ready()
                ts.append(time.perf_counter() - t0)
                cs.append(_cpu_s() - c0)
            name = f"{kernels.conv_name(c)} {kind}"
            wall[name], cpu[name] = 1000 * statistics.median(ts), 1000 * statistics.median(cs)
    print(json.dumps({"library": onednn.LIBRARY, "info": onednn.info(), "load": os.getloadavg()[0],
                      "wall_ms": wall, "cpu_ms": cpu}))


if __name__ == "__main__":
    main()
