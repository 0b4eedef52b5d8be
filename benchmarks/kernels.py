"""Where the step's time goes: kdjax on XLA:CPU, kdjax with the oneDNN FFI kernels, and PyTorch, in ONE process.

    python benchmarks/kernels.py [--reps=10] [--rounds=3] [--batch=64] [--no_onednn] [--omp] [--json=FILE]
                                 [--impls=XLA,oneDNN,torch]

Times, for every implementation alternately (one part of one implementation at a time, the order rotating round
after round, so machine load hits all alike): every distinct convolution of the CIFAR resnet8x4 / resnet32x4 pair
(forward, input gradient, weight gradient; enumerated from the models), the teacher's inference forward pass, and
the student's forward + backward pass. Columns:

  XLA      kdjax's default: lax.conv_general_dilated on XLA:CPU (strided input gradients phase-split, as fast_conv)
  oneDNN   kdjax/kernels/onednn (KDJAX_CONV=onednn), XLA-pool threading (oneDNN single-threaded per batch chunk)
  omp      the same kernels with oneDNN's own OpenMP threads (--omp)
  torch    PyTorch (oneDNN inside), channels-last

`--impls` times only some of them. With the oneDNN kernels loaded (Debian's oneDNN links its own OpenMP runtime),
PyTorch's parts in the same process ran up to 1.8x slower than in a process of their own (quiet machine,
2026-12-02), so the fair table comes from `benchmarks/kernels_split.sh`: PyTorch and kdjax in separate processes,
alternately.

Prints one table: milliseconds (median over rounds of the median over reps) and time ratios against PyTorch, then
the oneDNN implementation each convolution runs. Needs torch (pip install torch==2.13.0) and, for the oneDNN
columns, the built kernels (bash install.sh). Used to explain the compare.sh ratio (benchmarks/README.md).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import kdjax.runtime.xla_flags  # noqa: F401,E402  (kdjax's XLA flags, before jax)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.extend import core as jcore  # noqa: E402


def _median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def preset_convs(batch):
    """Distinct (x shape, w shape, stride, padding) of resnet8x4 + resnet32x4 at `batch`, from their jaxprs."""
    from kdjax.models.registry import get_model

    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                p = eqn.params
                assert p["feature_group_count"] == 1 and tuple(p["rhs_dilation"]) == (1, 1)
                found.add((tuple(eqn.invars[0].aval.shape), tuple(eqn.invars[1].aval.shape),
                           int(p["window_strides"][0]), int(p["padding"][0][0])))
            for v in eqn.params.values():
                for sub in v if isinstance(v, (list, tuple)) else [v]:
                    if isinstance(sub, (jcore.ClosedJaxpr, jcore.Jaxpr)):
                        walk(getattr(sub, "jaxpr", sub))

    for arch in ("resnet8x4", "resnet32x4"):
        model = get_model(arch, num_classes=100)
        x = jax.ShapeDtypeStruct((batch, 32, 32, 3), jnp.float32)
        walk(jax.make_jaxpr(lambda x: model.init(jax.random.PRNGKey(0), x, train=True))(x).jaxpr)
    # largest work first, like the README table
    return sorted(found, key=lambda c: (-c[0][1], c[1][0] == 1, c[0][3], c[1][3]))


def conv_name(c):
    (_, hw, _, ci), (k, _, _, co), s, _ = c
    return f"conv {hw}x{hw} {ci}->{co} k{k} s{s}"


def jax_parts(convs, batch, backend):
    """backend 'xla' (kdjax's default path) or 'onednn' (kdjax/kernels/onednn)."""
    from kdjax.kernels import onednn
    from kdjax.kernels import conv as fast_conv
    from kdjax.models.registry import get_model

    parts = {}
    rng = np.random.default_rng(0)
    for c in convs:
        x_shape, w_shape, s, p = c
        x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
        w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
        pad = ((p, p), (p, p))

        def conv(x_, w_, s=s, pad=pad):
            return lax.conv_general_dilated(x_, w_, (s, s), pad, dimension_numbers=fast_conv.DIMENSION_NUMBERS)

        dy = jnp.ones_like(conv(x, w))
        if backend == "onednn":
            fwd = jax.jit(lambda x, w, s=s, pad=pad: onednn.conv2d(x, w, (s, s), pad))
            dx = jax.jit(lambda x, w, dy, s=s, pad=pad: onednn.input_grad(dy, w, x.shape, (s, s), pad, 1))
            dw = jax.jit(lambda x, w, dy, s=s, pad=pad: onednn.weight_grad(x, dy, w.shape, (s, s), pad, 1))
        else:
            fwd = jax.jit(conv)
            if s == 1 or w_shape[0] == 1:  # XLA's own input gradient
                dx = jax.jit(lambda x, w, dy, conv=conv: jax.vjp(lambda a: conv(a, w), x)[1](dy)[0])
            else:  # what kdjax uses at stride 2 (fast_conv: phase-split, no multiplications by inserted zeros)
                dx = jax.jit(lambda x, w, dy, s=s, pad=pad: fast_conv.input_grad_phases(dy, w, x.shape, (s, s), pad))
            dw = jax.jit(lambda x, w, dy, conv=conv: jax.vjp(lambda b: conv(x, b), w)[1](dy)[0])
        name = conv_name(c)
        parts[name + " fwd"] = lambda f=fwd, x=x, w=w: jax.block_until_ready(f(x, w))
        parts[name + " dX"] = lambda f=dx, x=x, w=w, dy=dy: jax.block_until_ready(f(x, w, dy))
        parts[name + " dW"] = lambda f=dw, x=x, w=w, dy=dy: jax.block_until_ready(f(x, w, dy))
    x = jnp.asarray(rng.standard_normal((batch, 32, 32, 3)), jnp.float32)
    saved = fast_conv.BACKEND
    fast_conv.BACKEND = backend  # read when the models are traced (the jits below trace on their first call)
    try:
        teacher, student = get_model("resnet32x4", num_classes=100), get_model("resnet8x4", num_classes=100)
        tv = teacher.init(jax.random.PRNGKey(0), x[:2])
        sv = student.init(jax.random.PRNGKey(1), x[:2])
        t_fwd = jax.jit(lambda v, x: teacher.apply(v, x, train=False))

        def s_loss(p, x):
            out, _ = student.apply({"params": p, "batch_stats": sv["batch_stats"]}, x, train=True,
                                   mutable=["batch_stats"])
            return jnp.mean(out ** 2)

        s_grad = jax.jit(jax.grad(s_loss))
        jax.block_until_ready((t_fwd(tv, x), s_grad(sv["params"], x)))  # trace + compile now, with `backend`
    finally:
        fast_conv.BACKEND = saved
    parts["teacher resnet32x4 forward (inference)"] = lambda: jax.block_until_ready(t_fwd(tv, x))
    parts["student resnet8x4 forward + backward"] = lambda: jax.block_until_ready(s_grad(sv["params"], x))
    return parts


def torch_parts(convs, batch):
    import torch
    import torch.nn.functional as F

    from torch_reference import resnet8x4, resnet32x4

    cl = torch.channels_last
    parts = {}
    torch.manual_seed(0)
    for c in convs:
        (_, hw, _, ci), (k, _, _, co), s, p = c
        x = torch.randn(batch, ci, hw, hw).contiguous(memory_format=cl)
        w = torch.randn(co, ci, k, k).contiguous(memory_format=cl)
        dy = torch.ones_like(F.conv2d(x, w, stride=s, padding=p))

        def fwd(x=x, w=w, s=s, p=p):
            with torch.no_grad():
                F.conv2d(x, w, stride=s, padding=p)

        def dx(x=x, w=w, s=s, p=p, dy=dy):
            # the input gradient alone is a transposed convolution (what autograd calls for it)
            torch.nn.grad.conv2d_input(x.shape, w, dy, stride=s, padding=p)

        def dw(x=x, w=w, s=s, p=p, dy=dy):
            torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=s, padding=p)

        name = conv_name(c)
        parts[name + " fwd"], parts[name + " dX"], parts[name + " dW"] = fwd, dx, dw
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=cl)
    teacher = resnet32x4().to(memory_format=cl).eval()
    student = resnet8x4().to(memory_format=cl).train()

    def t_fwd():
        with torch.no_grad():
            teacher(x)

    def s_grad():
        student.zero_grad(set_to_none=True)
        (student(x)[0] ** 2).mean().backward()

    parts["teacher resnet32x4 forward (inference)"] = t_fwd
    parts["student resnet8x4 forward + backward"] = s_grad
    return parts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no_onednn", action="store_true", help="XLA and PyTorch only")
    ap.add_argument("--omp", action="store_true", help="also oneDNN with its OpenMP threads (column 'omp')")
    ap.add_argument("--json", default="", help="also write every measurement here (one JSON line per part)")
    ap.add_argument("--impls", default="XLA,oneDNN,omp,torch",
                    help="which columns to time (of XLA, oneDNN, omp, torch; oneDNN/omp need the built kernels, omp "
                         "also --omp)")
    args = ap.parse_args()
    wanted = set(args.impls.split(","))
    from kdjax.kernels import onednn

    convs = preset_convs(args.batch)
    impls = {"XLA": jax_parts(convs, args.batch, "xla")} if "XLA" in wanted else {}
    # only load the kernels (Debian's oneDNN brings its own OpenMP runtime) where they are timed: next to PyTorch's
    # OpenMP runtime in one process, PyTorch's teacher forward measured 1.8x slower than in a process of its own
    want_onednn = not args.no_onednn and bool({"oneDNN", "omp"} & wanted)
    use_onednn = want_onednn and onednn.available()
    if want_onednn and not use_onednn:
        print(f"oneDNN kernels unavailable ({onednn.why_unavailable()}): XLA and PyTorch only", file=sys.stderr)
    if use_onednn:
        onednn.set_threading("xla")
        impls["oneDNN"] = jax_parts(convs, args.batch, "onednn")
        if args.omp:
            impls["omp"] = impls["oneDNN"]  # same executables, run with the other threading mode
    if "torch" in wanted:
        impls["torch"] = torch_parts(convs, args.batch)
    names = list(impls)
    if not names:
        ap.error(f"--impls={args.impls}: nothing to time")
    results = {part: {k: [] for k in names} for part in impls[names[0]]}
    for r in range(args.rounds):
        for part in results:
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                if use_onednn and k in ("oneDNN", "omp"):
                    onednn.set_threading("omp" if k == "omp" else "xla")
                results[part][k].append(_median_ms(impls[k][part], args.reps))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    if use_onednn:
        onednn.set_threading("xla")
    vs = [k for k in names if k != "torch"] if "torch" in names else []
    header = f"{'part (batch ' + str(args.batch) + ', torch channels-last), ms':<48}" + "".join(
        f"{k:>8}" for k in names) + "".join(f"{k + '/torch':>13}" for k in vs)
    print(header)
    rows = []
    for part, by in results.items():
        med = {k: statistics.median(v) for k, v in by.items()}
        rows.append({"part": part, "ms": med, "ms_all": by})
        print(f"{part:<48}" + "".join(f"{med[k]:>8.1f}" for k in names)
              + "".join(f"{med[k] / med['torch']:>13.2f}" for k in vs))
    if use_onednn:
        print(f"\noneDNN: {onednn.info()}; implementations (fwd, dX, dW):")
        for c in convs:
            x_shape, w_shape, s, p = c
            print(f"  {conv_name(c):<28} {onednn.implementations(x_shape, w_shape, jnp.float32, (s, s), ((p, p), (p, p)))}")
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps({"batch": args.batch, "reps": args.reps, "rounds": args.rounds, **row}) + "\n")


if __name__ == "__main__":
    main()
