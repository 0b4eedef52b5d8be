"""Student accuracy and wall time: live teacher vs replay caches of K = 1, 4, 16 views, same budget, a few seeds.

    nice -n 10 python benchmarks/replay_accuracy.py [--train_limit=4096] [--epochs=16] [--seeds=0,1,2]
        [--views=1,4,16] [--root=/tmp/kdjax_replay_bench]

The offline default (configs/kd.py: Fashion-MNIST, convnet_teacher → convnet_student, KD T=4, augment 'flip') on
the first `train_limit` training images. The teacher is trained once (init='train' run, its pretrain export
reused); then per seed: the live-teacher run (the default pipeline), and for each K a replay cache built with that
seed (`cache_teacher --views=K`, its build time reported) and a run from it. Runs alternate live/cached per seed.
Prints one line per run and a summary: mean ± std top-1 of each arm, mean run time, cache build time, and the
break-even epoch count (build time / time saved per epoch).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kdjax.runtime.xla_flags  # noqa: F401,E402

import argparse
import json
import os
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def config(args, seed, **over):
    import importlib.util

    s = importlib.util.spec_from_file_location("kd", os.path.join(ROOT, "configs/kd.py"))
    m = importlib.util.module_from_spec(s)
    s.loader.exec_module(m)
    c = m.get_config()
    with c.unlocked():
        c.seed = seed
        c.data.train_limit, c.data.test_limit = args.train_limit, args.test_limit
        c.train.batch_size, c.train.epochs = args.batch, args.epochs
        c.train.log_every_steps, c.train.checkpoint_every_steps = 50, 100000
        c.train.eval_every_epochs = float(args.epochs)  # evaluate once, at the end
        c.pretrain.epochs, c.pretrain.batch_size = args.teacher_epochs, args.batch
        for k, v in over.items():
            node = c
            *ps, leaf = k.split(".")
            for p in ps:
                node = node[p]
            node[leaf] = v
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train_limit", type=int, default=4096)
    ap.add_argument("--test_limit", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=16)
    ap.add_argument("--teacher_epochs", type=float, default=8)
    ap.add_argument("--teacher_limit", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--views", default="1,4,16")
    ap.add_argument("--root", default="/tmp/kdjax_replay_bench")
    args = ap.parse_args()
    from kdjax import train
    from kdjax.tools.replay_build import build_replay_cache

    os.makedirs(args.root, exist_ok=True)
    t_dir = os.path.join(args.root, "teacher_run")  # trained once (on --teacher_limit images), reused
    teacher = os.path.join(t_dir, "pretrain", "Teacher", "export")
    if not os.path.isdir(teacher):
        t0 = time.perf_counter()
        train.run(config(args, 0, **{"train.epochs": 0.05, "data.train_limit": args.teacher_limit}), t_dir)
        print(f"teacher trained in {time.perf_counter() - t0:.0f}s", flush=True)
    res = {"live": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        arms = ["live"] + [f"K{k}" for k in args.views.split(",")]
        if seed % 2:
            arms = arms[1:] + arms[:1]
        for arm in arms:
            over = {"models.Teacher.init": teacher}
            build_s = 0.0
            if arm != "live":
                cache = os.path.join(args.root, f"cache_{args.train_limit}_s{seed}_{arm}")
                t0 = time.perf_counter()
                build_replay_cache(config(args, seed, **over), cache, views=int(arm[1:]), overwrite=True,
                                   log=lambda *a: None)
                build_s = time.perf_counter() - t0
                over["teacher_cache"] = cache
            wd = os.path.join(args.root, f"run_{args.train_limit}_s{seed}_{arm}")
            shutil.rmtree(wd, ignore_errors=True)
            t0 = time.perf_counter()
            train.run(config(args, seed, **over), wd)
            wall = time.perf_counter() - t0
            with open(os.path.join(wd, "result.json")) as f:
                r = json.load(f)
            top1 = float(r["Student/top1"])
            res.setdefault(arm, []).append({"seed": seed, "top1": top1, "wall_s": wall, "loop_s": r.get("seconds"),
                                            "build_s": build_s})
            print(json.dumps(dict(arm=arm, **res[arm][-1], load=os.getloadavg()[0])), flush=True)
    live = res["live"]
    mean = lambda xs: statistics.mean(xs)  # noqa: E731
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    lt = [r["top1"] for r in live]
    per_epoch_live = mean([r["loop_s"] for r in live]) / args.epochs
    print(f"live: top-1 {100 * mean(lt):.2f} ± {100 * sd(lt):.2f}% (n={len(lt)}), loop {mean([r['loop_s'] for r in live]):.1f}s")
    for arm in (a for a in res if a != "live"):
        t = [r["top1"] for r in res[arm]]
        loop = mean([r["loop_s"] for r in res[arm]])
        build = mean([r["build_s"] for r in res[arm]])
        saved = per_epoch_live - loop / args.epochs
        even = build / saved if saved > 0 else float("inf")
        print(f"{arm}: top-1 {100 * mean(t):.2f} ± {100 * sd(t):.2f}% (diff vs live {100 * (mean(t) - mean(lt)):+.2f} "
              f"points), loop {loop:.1f}s, cache build {build:.1f}s, saves {saved:.2f}s/epoch → break-even after "
              f"{even:.1f} epochs")


if __name__ == "__main__":
    main()
