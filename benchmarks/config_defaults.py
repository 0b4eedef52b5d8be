"""Run every config's offline default and print what its docstring should promise: wall time, CPU time, peak RSS
and each model's test top-1.

    python benchmarks/config_defaults.py [--configs=kd,dkd,...] [--out=benchmarks/results/config_defaults-DATE.jsonl]

The configs whose only model trained first is the default `Teacher` (convnet_teacher, 4 epochs of CE, seed 0)
would all train the same teacher; to save that repeated work, the first such config runs whole (teacher phase
included) and the others get its trained teacher as `--config.models.Teacher.init`. That teacher is bit-identical
to the one each of them would train (same arch, seed, data, pretrain budget), so their students are exactly the
default command's; the teacher phase's time is measured once, in the first run, and added in the table
("teacher phase" column). Every other config (mutual learning, several teachers, DeiT) runs whole.
One config at a time, in fresh processes; the machine's load average is recorded with every line, since a busy
machine stretches wall time (CPU time much less).
"""

import argparse
import datetime
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _configs():
    names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
    return [n for n in names if not n.startswith(("sweep_", "paddleclas", "_"))]


def _shares_default_teacher(name) -> bool:
    """True when the config's only model trained first is a Teacher equal to the default one."""
    config = _load(name)
    trained_first = [k for k, m in config.models.items() if m.init == "train"]
    if trained_first != ["Teacher"]:
        return False
    teacher = config.models.Teacher
    reference = _load("dkd")
    same = (teacher.arch == reference.models.Teacher.arch and dict(teacher.kwargs) == dict(reference.models.Teacher.kwargs)
            and config.pretrain.to_dict() == reference.pretrain.to_dict() and config.seed == reference.seed
            and config.data.to_dict() == reference.data.to_dict())
    return bool(same)


def _load(name):
    import importlib.util

    if REPO not in sys.path:
        sys.path.insert(0, REPO)

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _run(name, workdir, extra):
    cmd = [sys.executable, "-m", "kdjax.main", f"--config=configs/{name}.py", f"--workdir={workdir}", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {"config": name, "command": " ".join(cmd[1:]), "rc": proc.returncode, "wall_s": round(wall, 1),
              "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
              "peak_rss_mb": round(after.ru_maxrss / 1024), "load_before": round(load, 2),
              "load_after": round(os.getloadavg()[0], 2)}
    if proc.returncode != 0:
        record["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return record
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    record["top1"] = {k.split("/")[0]: v for k, v in summary["eval"].items() if k.endswith("/top1")}
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="", help="comma-separated config names (default: every config)")
    parser.add_argument("--out", default="", help="JSON lines file (default: benchmarks/results/config_defaults-DATE.jsonl)")
    parser.add_argument("--workdir", default="", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--teacher", default="", help="the default Teacher's export from an earlier run of this "
                                                      "script (WORKDIR/dkd/pretrain/Teacher/export), to reuse it")
    args = parser.parse_args()
    names = [n for n in args.configs.split(",") if n] or _configs()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join(REPO, "benchmarks", "results", f"config_defaults-{stamp}.jsonl")
    root = args.workdir or tempfile.mkdtemp(prefix="kdjax_config_defaults_")
    shared = [n for n in names if _shares_default_teacher(n)]
    teacher, teacher_phase = args.teacher or None, None
    for name in sorted(names, key=lambda n: (n not in shared, n != "dkd", n)):
        workdir = os.path.join(root, name)
        extra = []
        if name in shared and teacher:
            extra = [f"--config.models.Teacher.init={teacher}"]
        record = _run(name, workdir, extra)
        if name in shared and not teacher and record["rc"] == 0:
            teacher = os.path.join(workdir, "pretrain", "Teacher", "export")
            teacher_phase = _teacher_phase_seconds(workdir)
            record["teacher_phase_s"] = teacher_phase
        elif name in shared:
            record["teacher_phase_s_not_run"] = teacher_phase
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        top1 = ", ".join(f"{k} {v:.2%}" for k, v in sorted(record.get("top1", {}).items()))
        print(f"{name:14s} rc={record['rc']} wall {record['wall_s']:7.1f}s cpu {record['cpu_s']:7.1f}s "
              f"load {record['load_before']:.1f}  {top1} {record.get('error', '')}", flush=True)
    print(f"lines: {out}")


def _teacher_phase_seconds(workdir):
    """Wall seconds of the teacher phase, from the pretrain run's metrics (first to last record)."""
    path = os.path.join(workdir, "pretrain", "Teacher", "metrics.jsonl")
    if not os.path.exists(path):
        return None
    times = [json.loads(line).get("time") for line in open(path) if line.strip()]
    times = [t for t in times if isinstance(t, (int, float))]
    return round(times[-1] - times[0], 1) if len(times) > 1 else None


if __name__ == "__main__":
    main()
