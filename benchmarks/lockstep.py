"""kdjax vs PyTorch, alternating step by step in separate processes (robust to a shared, noisy machine).

    python benchmarks/lockstep.py [--rounds=10] [--config=configs/dkd.py:cifar100] [--batch=64] [--threads=0]
                                  [--gap=0.3] [--json=FILE]

Starts three worker processes — `python -m kdjax.tools.bench --serve` and `benchmarks/torch_reference.py --serve`
channels-first and channels-last — lets each compile and warm up, then runs rounds: in each round every worker
runs ONE step while the others wait idle on stdin (the order rotates each round). So every kdjax step has PyTorch
steps taken seconds before and after it, under the same machine load. Load from other users still shifts every
number, but nearly equally for both sides of a ratio.

Reports, per worker, the median step time and img/s and its peak RSS; PyTorch's layout with the higher median
img/s counts; then the median over rounds of kdjax img/s / PyTorch img/s (per-round ratios), and the ratio of
peak RSS. One JSON summary line goes to --json (appended) for compare.sh. --onednn adds a fourth worker, kdjax with
KDJAX_CONV=onednn (the oneDNN FFI convolutions, kdjax/kernels/onednn), with its own ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# the presets' frozen teacher must name an init (kdjax.tools.bench checks); 'train' passes and times random weights
TEACHER_INIT = ["--config.models.Teacher.init=train"]

def start(name, cmd, env=None):
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, bufsize=1, env=env)
    return name, p


def wait_ready(name, p):
    for line in p.stdout:
        if line.strip() == "ready":
            return
    raise RuntimeError(f"{name} exited before it was ready (rc {p.wait()}); run it alone to see why")


def command(p, cmd):
    p.stdin.write(cmd + "\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--config", default="configs/dkd.py:cifar100")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default = CPU count)")
    ap.add_argument("--gap", type=float, default=0.3, help="seconds of rest between steps (spinning threads settle)")
    ap.add_argument("--json", default=None, help="append the summary JSON line to this file")
    ap.add_argument("--no_nchw", action="store_true", help="skip PyTorch channels-first")
    ap.add_argument("--onednn", action="store_true", help="also kdjax with KDJAX_CONV=onednn ('kdjax_onednn')")
    args = ap.parse_args()

    torch_cmd = [sys.executable, "benchmarks/torch_reference.py", f"--batch={args.batch}", f"--threads={args.threads}",
                 "--serve"]
    workers = [start("kdjax", [sys.executable, "-m", "kdjax.tools.bench", f"--config={args.config}", *TEACHER_INIT,
                               f"--batch={args.batch}", "--serve"])]
    # one at a time: compiling/warming up in parallel would only slow every one of them down
    wait_ready(*workers[0])
    if args.onednn:
        workers.append(start("kdjax_onednn", [sys.executable, "-m", "kdjax.tools.bench", f"--config={args.config}",
                                              *TEACHER_INIT,
                                              f"--batch={args.batch}", "--serve"],
                             env={**os.environ, "KDJAX_CONV": "onednn"}))
        wait_ready(*workers[-1])
    if not args.no_nchw:
        workers.append(start("torch_nchw", torch_cmd))
        wait_ready(*workers[-1])
    workers.append(start("torch_nhwc", torch_cmd + ["--channels_last"]))
    wait_ready(*workers[-1])

    times = {name: [] for name, _ in workers}
    cpu = {name: [] for name, _ in workers}
    for r in range(args.rounds):
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        for name, p in order:
            time.sleep(args.gap)
            wall_s, cpu_s = command(p, "step").split()
            times[name].append(float(wall_s))
            cpu[name].append(float(cpu_s))
    results = {name: json.loads(command(p, "done")) for name, p in workers}
    for _, p in workers:
        p.wait()

    torch_names = [n for n in times if not n.startswith("kdjax")]
    best = max(torch_names, key=lambda n: statistics.median([1 / t for t in times[n]]))
    ratios = [b / a for a, b in zip(times["kdjax"], times[best])]  # img/s ratio = inverse time ratio
    summary = {
        "rounds": args.rounds, "config": args.config, "batch": args.batch,
        "kdjax_img_s": round(args.batch / statistics.median(times["kdjax"]), 2),
        **{f"{n}_img_s": round(args.batch / statistics.median(times[n]), 2) for n in torch_names},
        "torch_best": best,
        "speed_ratio": round(statistics.median(ratios), 3),
        "speed_ratios": [round(x, 3) for x in ratios],
        "kdjax_peak_rss_mb": results["kdjax"]["peak_rss_mb"],
        **{f"{n}_peak_rss_mb": results[n]["peak_rss_mb"] for n in torch_names},
        "memory_ratio": round(results["kdjax"]["peak_rss_mb"] / results[best]["peak_rss_mb"], 3),
        **{f"{n}_cpu_s_per_step": round(statistics.median(cpu[n]), 3) for n in times},
        "kdjax_compile_s": results["kdjax"]["compile_s"], "xla_flags": results["kdjax"].get("xla_flags", ""),
        "torch_threads": results[best]["device"],
    }
    if "kdjax_onednn" in times:
        onednn_ratios = [b / a for a, b in zip(times["kdjax_onednn"], times[best])]
        summary.update({
            "kdjax_onednn_img_s": round(args.batch / statistics.median(times["kdjax_onednn"]), 2),
            "onednn_speed_ratio": round(statistics.median(onednn_ratios), 3),
            "onednn_speed_ratios": [round(x, 3) for x in onednn_ratios],
            "kdjax_onednn_peak_rss_mb": results["kdjax_onednn"]["peak_rss_mb"],
            "onednn_memory_ratio": round(results["kdjax_onednn"]["peak_rss_mb"] / results[best]["peak_rss_mb"], 3),
            "onednn_vs_xla_speed": round(statistics.median(
                [a / b for a, b in zip(times["kdjax"], times["kdjax_onednn"])]), 3)})
    for n in times:
        print(f"{n:>12}: median step {1000 * statistics.median(times[n]):8.1f} ms  "
              f"{args.batch / statistics.median(times[n]):6.2f} img/s   CPU/step {statistics.median(cpu[n]):6.2f} s "
              f"(cores busy {statistics.median([c / t for c, t in zip(cpu[n], times[n])]):4.2f})   "
              f"peak RSS {results[n]['peak_rss_mb']:7.1f} MB",
              flush=True)
    print(f"kdjax / PyTorch ({best}): img/s x{summary['speed_ratio']:.3f} (median of {args.rounds} per-round "
          f"ratios), peak RSS x{summary['memory_ratio']:.3f}", flush=True)
    if "kdjax_onednn" in times:
        print(f"kdjax_onednn / PyTorch ({best}): img/s x{summary['onednn_speed_ratio']:.3f}, peak RSS "
              f"x{summary['onednn_memory_ratio']:.3f}; kdjax_onednn / kdjax: img/s x{summary['onednn_vs_xla_speed']:.3f}",
              flush=True)
    print(json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
