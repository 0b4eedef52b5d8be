"""benchmarks/accelerator.sh --smoke: the GPU benchmark's every code path on the CPU with tiny sizes (CI runs it, so the
script is known to work before the first GPU is lent)."""

import json
import os
import subprocess

from conftest import REPO


def test_accelerator_smoke_prints_a_line_per_measurement_and_the_ratio_table(tmp_path):
    out_file = tmp_path / "accelerator.jsonl"
    env = dict(os.environ, OUT=str(out_file), BUDGET_S="600")
    proc = subprocess.run(["bash", "benchmarks/accelerator.sh", "--smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows == [json.loads(line) for line in out_file.read_text().splitlines()]
    runs = {r["run"]: r for r in rows}
    kdjax = [f"kdjax/{k}/{p}/b8" for k in ("auto", "xla") for p in ("float32", "bfloat16")]
    assert set(kdjax) <= set(runs), sorted(runs)
    for name in kdjax:
        r = runs[name]
        assert r["smoke"] and r["images_per_s"] > 0 and r["batch"] == 8, r
        assert r["precision"] == name.split("/")[2] and r["kernels"] == name.split("/")[1]
        assert r["flops_per_step"] > 0 and 0 < r["mfu"] and "matmul" in r["peak_source"]
    torch_runs = [n for n in runs if n.startswith("torch/")]
    try:
        import torch  # noqa: F401
    except ImportError:
        assert torch_runs == [] and "skipping the PyTorch measurements" in proc.stderr
    else:
        assert sorted(torch_runs) == ["torch/channels_last/bfloat16/b8", "torch/channels_last/float32/b8"]
        assert runs["torch/channels_last/bfloat16/b8"]["precision"].startswith("bfloat16")
        # the PyTorch twin is PaddleClas' ResNet34 / ResNet18 as kdjax builds them: torchvision's 21,797,672 /
        # 11,689,512 parameters plus the first block's 1x1 projection (64·64 weights + 2·64 BatchNorm) = +4,224
        assert runs["torch/channels_last/float32/b8"]["params"] == {"teacher": 21_801_896, "student": 11_693_736}
    assert "kdjax/torch" in proc.stdout and "xla/auto" in proc.stdout  # the ratio table
