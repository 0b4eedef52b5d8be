"""The GPU/TPU benchmark of issue 15, driven by benchmarks/accelerator.sh (see its header for how to run it).

Measurements, each in its own process (one JSON line each, tagged with "run"):
  (a) kdjax  configs/dkd.py:imagenet (ResNet34 -> ResNet18, DKD, 224x224, synthetic batch on the device),
             kernels='auto', float32 and bfloat16, batch 128 and 256: img/s, FLOPs, MFU (kdjax.tools.bench)
  (c) torch  benchmarks/torch_reference.py --model=imagenet, the same step in PyTorch, channels-last, float32
             (TF32 allowed, as XLA does) and bf16 autocast (AMP), same batches
  (b) kdjax  as (a) with the other kernel set forced: 'cpu_tuned' on GPU/TPU (confirms that auto's 'xla' is the
             faster there), 'xla' on CPU
Then a ratio table: kdjax/torch img/s per precision and batch, auto/other kernels, and MFU of both (torch's from
kdjax's FLOPs per image: the same network). Runs start in that order until `--budget_s` is spent; a run that
would start later is reported as skipped. `--smoke`: CPU, tiny sizes (the default config's small CNNs for kdjax,
32x32 ResNets for torch, batch 8, 2 steps), every code path, numbers meaningless.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kdjax_cmd(args, precision, batch, kernels):
    config = "configs/dkd.py" if args.smoke else "configs/dkd.py:imagenet"
    cmd = [sys.executable, "-m", "kdjax.tools.bench", f"--config={config}", f"--batch={batch}",
           f"--steps={args.steps}", f"--warmup={args.warmup}", f"--config.precision={precision}",
           f"--config.kernels={kernels}"]
    if args.smoke:
        cmd.append("--image_shape=28,28,1")
    return cmd


def torch_cmd(args, precision, batch):
    cmd = [sys.executable, "benchmarks/torch_reference.py", "--model=imagenet", "--channels_last",
           f"--batch={batch}", f"--steps={args.steps}", f"--warmup={args.warmup}",
           f"--device={'cpu' if args.smoke else 'cuda'}"]
    if args.smoke:
        cmd.append("--image_size=32")
    if precision == "bfloat16":
        cmd.append("--amp")
    return cmd


def plan(args, backend):
    """[(run name, command)] in the order they run."""
    batches = [8] if args.smoke else [int(b) for b in args.batches.split(",")]
    precisions = ("float32", "bfloat16")
    other = "xla" if backend == "cpu" else "cpu_tuned"
    runs = []
    for batch in sorted(batches, reverse=True):
        for p in precisions:
            runs.append((f"kdjax/auto/{p}/b{batch}", kdjax_cmd(args, p, batch, "auto")))
            if args.torch:
                runs.append((f"torch/channels_last/{p}/b{batch}", torch_cmd(args, p, batch)))
    for batch in sorted(batches, reverse=True):
        for p in precisions:
            runs.append((f"kdjax/{other}/{p}/b{batch}", kdjax_cmd(args, p, batch, other)))
    return runs, other


def run_one(name, cmd, timeout):
    t0 = time.time()
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"run": name, "error": f"timed out after {timeout}s", "wall_s": round(time.time() - t0, 1)}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"run": name, "error": f"exit {out.returncode}: {' | '.join(tail)}",
                "wall_s": round(time.time() - t0, 1)}
    result = json.loads(lines[-1])
    return {"run": name, "wall_s": round(time.time() - t0, 1), **result}


def ratio_table(rows, other, smoke) -> str:
    by = {r["run"]: r for r in rows if "images_per_s" in r}
    flops = {}  # FLOPs per image of the kdjax step, per (precision, batch)
    for name, r in by.items():
        if name.startswith("kdjax/auto/") and r.get("flops_per_image"):
            flops[tuple(name.split("/")[2:])] = r["flops_per_image"]
    lines = ["", "precision  batch  kdjax img/s  torch img/s  kdjax/torch  kdjax MFU  torch MFU  "
             f"{other}/auto"]
    keys = sorted({tuple(n.split("/")[2:]) for n in by}, key=lambda k: (k[0], -int(k[1][1:])))
    for p, b in keys:
        k, o = by.get(f"kdjax/auto/{p}/{b}"), by.get(f"kdjax/{other}/{p}/{b}")
        t = by.get(f"torch/channels_last/{p}/{b}")
        ips = lambda r: f"{r['images_per_s']:.1f}" if r else "-"  # noqa: E731
        ratio = lambda x, y: f"{x['images_per_s'] / y['images_per_s']:.2f}" if x and y else "-"  # noqa: E731
        peak = (k or {}).get("peak_tflops")
        torch_mfu = "-"
        if t and peak and (p, b) in flops:
            torch_mfu = f"{t['images_per_s'] * flops[(p, b)] / (peak * 1e12):.3f}"
        kdjax_mfu = f"{k['mfu']:.3f}" if k and k.get("mfu") is not None else "-"
        lines.append(f"{p:<10} {b[1:]:>5}  {ips(k):>11}  {ips(t):>11}  {ratio(k, t):>11}  {kdjax_mfu:>9}  "
                     f"{torch_mfu:>9}  {ratio(o, k):>9}")
    peaks = sorted({r.get("peak_source") for r in by.values() if r.get("peak_source")})
    lines.append("peak: " + ("; ".join(peaks) if peaks else "unknown"))
    if smoke:
        lines.append("(--smoke: tiny CPU sizes, kdjax and torch run different models; the numbers mean nothing)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--backend", default="gpu", help="jax's default backend (accelerator.sh detects it)")
    ap.add_argument("--batches", default="256,128")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget_s", type=float, default=400.0, help="no run starts after this many seconds")
    ap.add_argument("--run_timeout_s", type=float, default=240.0)
    ap.add_argument("--no_torch", dest="torch", action="store_false")
    ap.add_argument("--out", default="", help="also append every JSON line to this file")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    runs, other = plan(args, args.backend)
    start, rows = time.time(), []
    for name, cmd in runs:
        elapsed = time.time() - start
        if elapsed > args.budget_s:
            row = {"run": name, "skipped": f"budget of {args.budget_s:.0f}s spent ({elapsed:.0f}s)"}
        else:
            row = run_one(name, cmd, min(args.run_timeout_s, max(30.0, args.budget_s + 40 - elapsed)))
        row.setdefault("smoke", args.smoke)
        rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    print(ratio_table(rows, other, args.smoke), flush=True)
    failed = [r["run"] for r in rows if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
