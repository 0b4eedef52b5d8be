"""`--mode=check` (kdjax/tools/preflight.py) and the device-memory refusal of a training run.

The check prints what a run would train and cost without training or writing anything; missing data or checkpoints
are reported and replaced by the config's shapes and random weights; a step over the memory margin is refused
(KDJAX_DEVICE_MEMORY_BYTES forces a tiny device), before training as well as in the check.
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO, load_config, tiny

# convnet_student on 28×28×1, 10 classes (kdjax/models/convnet.py: widths 8/16/32, one conv each, stride-2 stem),
# counted by hand: stem 3·3·1·8 + BN 2·8 = 88; stage 0 3·3·8·8 + 16 = 592; stage 1 3·3·8·16 + 32 = 1,184;
# stage 2 3·3·16·32 + 64 = 4,672; fc 32·10 + 10 = 330
STUDENT_PARAMS = 88 + 592 + 1184 + 4672 + 330
# forward multiply-adds per image of the teacher (widths 32/64/128) and the student: 3×3 convs on 14×14 (stem,
# stage 0), 7×7 (stage 1) and 3×3 (stage 2) maps, plus fc
TEACHER_MACS = 14 * 14 * 9 * 32 + 14 * 14 * 9 * 32 * 32 + 7 * 7 * 9 * 32 * 64 + 3 * 3 * 9 * 64 * 128 + 128 * 10
STUDENT_MACS = 14 * 14 * 9 * 8 + 14 * 14 * 9 * 8 * 8 + 7 * 7 * 9 * 8 * 16 + 3 * 3 * 9 * 16 * 32 + 32 * 10


def _check(tmp_path, *flags, env=None):
    cmd = [sys.executable, "-m", "kdjax.main", "--config=configs/dkd.py", f"--workdir={tmp_path / 'wd'}",
           "--mode=check", *flags]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


def test_check_prints_models_features_losses_mesh_flops_and_memory(tmp_path):
    out = _check(tmp_path, "--config.models.Student.capture=('blocks[2]',)",
                 "--config.models.Teacher.init=/nonexistent")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert f"Student: convnet_student, {STUDENT_PARAMS:,} params, trained, exported" in text
    assert "Teacher: convnet_teacher" in text and "frozen" in text
    assert "blocks[2]      [N, 3, 3, 32]" in text and "logits         [N, 10]" in text
    assert "note: models.Teacher.init: not usable" in text and "random weights here" in text
    assert "dkd: dkd x1 on Student/Teacher (logits -> logits)" in text and "gt_ce: gt_ce x1 on Student" in text
    assert "mesh: data=1 x fsdp=1 over 1 cpu device(s)" in text and "kernels auto -> cpu_tuned" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("train step (XLA)"))
    per_image = float(line.split(",")[-1].split("GFLOP")[0].strip()) * 1e9
    # teacher forward + student forward and backward (≈ 3× its forward): 2 FLOPs per multiply-add; XLA also counts
    # the elementwise work and skips the input gradient of the stem, hence the band
    expected = 2 * TEACHER_MACS + 3 * 2 * STUDENT_MACS
    assert 0.7 * expected < per_image < 1.5 * expected, (per_image, expected)
    assert "memory per device (XLA estimate)" in text and "fits:" in text
    assert not os.path.exists(tmp_path / "wd")  # nothing written


def test_check_without_data_uses_the_declared_shapes(tmp_path):
    out = _check(tmp_path, "--config.data.source=tfds", "--config.data.name=cifar10")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "note: data: not available" in out.stdout and "images [32, 32, 3], 10 classes" in out.stdout


def test_check_refuses_a_step_larger_than_the_device(tmp_path):
    out = _check(tmp_path, env={"KDJAX_DEVICE_MEMORY_BYTES": "1000000"})
    assert out.returncode == 2
    assert "DOES NOT FIT" in out.stdout and "train step (XLA)" in out.stdout  # the figures came first
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("kdjax: error: config.train.batch_size:") and "train.grad_accum_steps" in error


def test_training_is_refused_before_the_first_step_when_the_step_does_not_fit(tmp_path, monkeypatch):
    from kdjax import train
    from kdjax.errors import ConfigError

    config = tiny(load_config("configs/kd.py"), train_limit=128, test_limit=64, batch=32, epochs=1.0)
    with config.unlocked():
        config.models.Teacher.frozen, config.models.Teacher.init = False, ""  # no pre-training phase: distill now
    monkeypatch.setenv("KDJAX_DEVICE_MEMORY_BYTES", "200000")
    with pytest.raises(ConfigError) as e:
        train.run(config, str(tmp_path / "wd"))
    assert e.value.field == "train.batch_size" and "train.grad_accum_steps (now 1" in str(e.value)
    assert not os.path.exists(tmp_path / "wd" / "checkpoints" / "1")
    metrics = tmp_path / "wd" / "metrics.jsonl"
    assert not metrics.exists() or '"kind": "train"' not in metrics.read_text()  # no step ran


def test_imagenet_preset_at_batch_256_on_eight_devices_reports_its_memory_per_device(tmp_path):
    """The issue's case: configs/dkd.py:imagenet (ResNet34 → ResNet18, 224², batch 256) on 8 simulated devices,
    without ImageNet or a teacher checkpoint (declared shapes, random weights). A device of 80 GiB stands in for
    the accelerator (the simulated CPU devices share this host's memory)."""
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "KDJAX_DEVICE_MEMORY_BYTES": str(80 * 2 ** 30)}
    cmd = [sys.executable, "-m", "kdjax.main", "--config=configs/dkd.py:imagenet", f"--workdir={tmp_path / 'wd'}",
           "--mode=check", "--config.train.batch_size=256"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500, env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "images [224, 224, 3], 1000 classes" in text
    assert "mesh: data=8 x fsdp=1 over 8 cpu device(s)" in text and "batch 256 = 32 per device" in text
    # ResNet18 (PaddleClas layout: torchvision's 11,689,512 + the first block's 1x1 projection 64·64 + 2·64)
    assert "Student: ResNet18, 11,693,736 params" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("memory per device (XLA estimate)"))
    total = line.split(":", 1)[1].split("=")[0].strip()
    value, unit = total.split()
    per_device = float(value) * (2 ** 30 if unit == "GiB" else 2 ** 20)
    # at least the float32 state every device holds (teacher + student params, student momentum) and at most what
    # 32 images of ResNet34 inference + ResNet18 training could keep alive (< 8 GiB)
    assert (21.8e6 + 2 * 11.7e6) * 4 < per_device < 8 * 2 ** 30, line
    assert "fits:" in text
    assert not os.path.exists(tmp_path / "wd")
