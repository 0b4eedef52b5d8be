"""Where the step's time goes, kdjax (XLA:CPU) against PyTorch (oneDNN), part by part, in ONE process.

    python benchmarks/kernels.py [--reps=10] [--rounds=3] [--batch=64]

Times, for both frameworks alternately (one part of one framework at a time, round after round, so machine load
hits both alike): every 3x3 convolution shape of the CIFAR resnet8x4 / resnet32x4 pair (forward, input gradient,
weight gradient), the teacher's inference forward pass, and the student's forward + backward pass. Prints one
table: milliseconds (median over rounds of the median over reps) and the XLA / PyTorch time ratio. Needs torch.
Models: kdjax's zoo and benchmarks/torch_reference.py's. Used to explain the compare.sh ratio
(benchmarks/README.md).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import kdjax.runtime.xla_flags  # noqa: F401,E402  (kdjax's XLA flags, before jax)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

# (H=W, C_in, C_out, stride) of the 3x3 convolutions in resnet8x4 / resnet32x4
SHAPES = [(32, 32, 64, 1), (32, 64, 64, 1), (32, 64, 128, 2), (16, 128, 128, 1), (16, 128, 256, 2), (8, 256, 256, 1)]


def _median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def jax_parts(batch):
    from kdjax.kernels import conv as fast_conv
    from kdjax.models.registry import get_model

    parts = {}
    rng = np.random.default_rng(0)
    for hw, ci, co, s in SHAPES:
        x = jnp.asarray(rng.standard_normal((batch, hw, hw, ci)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, ci, co)), jnp.float32)

        def conv(x_, w_, s=s):
            return lax.conv_general_dilated(x_, w_, (s, s), ((1, 1), (1, 1)), dimension_numbers=fast_conv.DIMENSION_NUMBERS)

        dy = jnp.ones_like(conv(x, w))
        fwd = jax.jit(conv)
        if s == 1:  # XLA's own input gradient
            dx = jax.jit(lambda x, w, dy, conv=conv: jax.vjp(lambda a: conv(a, w), x)[1](dy)[0])
        else:  # what kdjax uses at stride 2 (fast_conv: phase-split, no multiplications by inserted zeros)
            dx = jax.jit(lambda x, w, dy, s=s: fast_conv.input_grad_phases(dy, w, x.shape, (s, s), ((1, 1), (1, 1))))
        dw = jax.jit(lambda x, w, dy, conv=conv: jax.vjp(lambda b: conv(x, b), w)[1](dy)[0])
        name = f"conv {hw}x{hw} {ci}->{co} s{s}"
        parts[name + " fwd"] = lambda f=fwd, x=x, w=w: jax.block_until_ready(f(x, w))
        parts[name + " dX"] = lambda f=dx, x=x, w=w, dy=dy: jax.block_until_ready(f(x, w, dy))
        parts[name + " dW"] = lambda f=dw, x=x, w=w, dy=dy: jax.block_until_ready(f(x, w, dy))
    x = jnp.asarray(rng.standard_normal((batch, 32, 32, 3)), jnp.float32)
    teacher, student = get_model("resnet32x4", num_classes=100), get_model("resnet8x4", num_classes=100)
    tv = teacher.init(jax.random.PRNGKey(0), x[:2])
    sv = student.init(jax.random.PRNGKey(1), x[:2])
    t_fwd = jax.jit(lambda v, x: teacher.apply(v, x, train=False))

    def s_loss(p, x):
        out, _ = student.apply({"params": p, "batch_stats": sv["batch_stats"]}, x, train=True,
                               mutable=["batch_stats"])
        return jnp.mean(out ** 2)

    s_grad = jax.jit(jax.grad(s_loss))
    parts["teacher resnet32x4 forward (inference)"] = lambda: jax.block_until_ready(t_fwd(tv, x))
    parts["student resnet8x4 forward + backward"] = lambda: jax.block_until_ready(s_grad(sv["params"], x))
    return parts


def torch_parts(batch):
    import torch
    import torch.nn.functional as F

    from torch_reference import resnet8x4, resnet32x4

    cl = torch.channels_last
    parts = {}
    torch.manual_seed(0)
    for hw, ci, co, s in SHAPES:
        x = torch.randn(batch, ci, hw, hw).contiguous(memory_format=cl)
        w = torch.randn(co, ci, 3, 3).contiguous(memory_format=cl)
        dy = torch.ones_like(F.conv2d(x, w, stride=s, padding=1))
        xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

        def fwd(x=x, w=w, s=s):
            with torch.no_grad():
                F.conv2d(x, w, stride=s, padding=1)

        def dx(x=x, w=w, s=s, dy=dy):
            # the input gradient alone is a transposed convolution (what autograd calls for it)
            torch.nn.grad.conv2d_input(x.shape, w, dy, stride=s, padding=1)

        def dw(x=x, w=w, s=s, dy=dy):
            torch.nn.grad.conv2d_weight(x, w.shape, dy, stride=s, padding=1)

        del xg, wg
        name = f"conv {hw}x{hw} {ci}->{co} s{s}"
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
    args = ap.parse_args()
    ours, theirs = jax_parts(args.batch), torch_parts(args.batch)
    results = {name: ([], []) for name in ours}
    for r in range(args.rounds):
        for name in ours:
            pair = [(0, ours[name]), (1, theirs[name])]
            for i, fn in (pair if r % 2 == 0 else pair[::-1]):
                results[name][i].append(_median_ms(fn, args.reps))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'part (batch ' + str(args.batch) + ', channels-last torch)':<48} {'XLA ms':>8} {'torch ms':>9} "
          f"{'XLA/torch':>9}")
    for name, (a, b) in results.items():
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:<48} {ma:>8.1f} {mb:>9.1f} {ma / mb:>9.2f}")


if __name__ == "__main__":
    main()
