"""The PaddleClas YAML route end to end: every distillation YAML of the seed document trains a few steps through
`configs/paddleclas.py` on tiny generated list files, logging PaddleClas' metric names; the CLI takes `-o` overrides
both ways and refuses by YAML path.

To keep each run to seconds, `-o` overrides swap the ImageNet networks for kdjax's small CNNs (and their feature
names); the YAMLs' own networks, features and loss values are checked without training in
tests/unit/test_paddleclas_seed.py. A frozen teacher gets init='train' (trained here first, then kept in the test
session's model cache) instead of PaddleClas' download."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_config

sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from test_paddleclas_seed import KEYS, METHODS, seed_yaml  # noqa: E402


def write_list_dataset(root, classes=4, train=16, val=8, size=40):
    """PNG images whose colour depends on the class, with PaddleClas' list files (`path label`)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for split, n in (("train", train), ("val", val)):
        lines = []
        for i in range(n):
            label = i % classes
            pixels = rng.integers(0, 60, (size, size + 8, 3)) + np.array([60 * label, 200 - 40 * label, 100])
            name = f"images/{split}_{i}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(os.path.join(root, name))
            lines.append(f"{name} {label}")
        with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return str(root)


def tiny_overrides(root):
    """PaddleClas -o overrides: the generated data, 32×32 crops, batch 4, one epoch."""
    out = []
    for split, lst in (("Train", "train_list.txt"), ("Eval", "val_list.txt")):
        out += [f"DataLoader.{split}.dataset.image_root={root}",
                f"DataLoader.{split}.dataset.cls_label_path={root}/{lst}", f"DataLoader.{split}.sampler.batch_size=4"]
    return out + ["DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32",
                  "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=36",
                  "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=32", "Global.image_shape=[3, 32, 32]",
                  "Global.epochs=1", "Global.print_batch_step=1", "Optimizer.lr.warmup_epoch=0"]


def _cnn(path, arch, features=None):
    out = [f"{path}.name={arch}", f"{path}.pretrained=False"]
    if features is not None:
        out.append(f"{path}.return_patterns={features}")
    return out


BLOCKS = ["blocks[0]", "blocks[1]", "blocks[2]"]
SMALL = {  # -o overrides: each seed YAML on kdjax's small CNNs, features renamed to theirs
    "ssld": _cnn("Arch.models.0.Teacher", "convnet_teacher") + _cnn("Arch.models.1.Student", "convnet_student"),
    "dml": _cnn("Arch.models.0.Teacher", "convnet_student") + _cnn("Arch.models.1.Student", "convnet_student"),
    "udml": (_cnn("Arch.models.0.Teacher", "convnet_student", BLOCKS) + _cnn("Arch.models.1.Student", "convnet_student",
                                                                              BLOCKS)
             + ["Loss.Train.2.DistillationDistanceLoss.key=blocks[1]"]),
    "afd": (_cnn("Arch.models.0.Teacher.models.0.ResNet34", "convnet_teacher", BLOCKS)
            + [f"Arch.models.0.Teacher.models.1.LinearTransformTeacher.keys={BLOCKS}"]
            + _cnn("Arch.models.1.Student.models.0.ResNet18", "convnet_student", BLOCKS[1:])
            + [f"Arch.models.1.Student.models.1.LinearTransformStudent.keys={BLOCKS[1:]}"]),
    "dkd": _cnn("Arch.models.0.Teacher", "convnet_teacher") + _cnn("Arch.models.1.Student", "convnet_student"),
    "dist": _cnn("Arch.models.0.Teacher", "convnet_teacher") + _cnn("Arch.models.1.Student", "convnet_student"),
    "mgd": (_cnn("Arch.models.0.Teacher", "convnet_teacher", ["blocks[2]"])
            + _cnn("Arch.models.1.Student", "convnet_student", ["blocks[2]"])
            + ["Loss.Train.1.DistillationPairLoss.s_keys=['blocks[2]']",
               "Loss.Train.1.DistillationPairLoss.t_keys=['blocks[2]']",
               "Loss.Train.1.DistillationPairLoss.student_channels=32",
               "Loss.Train.1.DistillationPairLoss.teacher_channels=128"]),
    "wsl": _cnn("Arch.models.0.Teacher", "convnet_teacher") + _cnn("Arch.models.1.Student", "convnet_student"),
}


def random_export(directory, arch, size=32):
    """A random-weights export of `arch` (1000 classes): a frozen teacher's init without downloading anything."""
    import jax
    import jax.numpy as jnp

    from kdjax.models import get_model
    from kdjax.weights.export_dir import make_spec, save_export

    model = get_model(arch, num_classes=1000)
    variables = jax.jit(lambda r: model.init(r, jnp.zeros((1, size, size, 3)), train=False))(jax.random.PRNGKey(0))
    save_export(str(directory), {k: v for k, v in variables.items() if k in ("params", "batch_stats")},
                make_spec(arch, {}, 1000, [size, size, 3], model_name="Teacher"))
    return str(directory)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_list_dataset(tmp_path_factory.mktemp("lists"))


@pytest.mark.parametrize("method", METHODS)
def test_seed_yaml_trains_through_the_yaml_route(method, data, tmp_path):
    from kdjax import train

    path = seed_yaml(method, tmp_path)
    arg = ",-o,".join([path] + tiny_overrides(data) + SMALL[method])
    config = load_config("configs/paddleclas.py", arg)
    with config.unlocked():
        config.train.checkpoint_every_steps = 100
        config.pretrain.epochs = 1.0
        for m in config.models.values():
            if m.frozen:  # PaddleClas' pretrained teacher → trained here first (once per session: the model cache)
                m.init = "train"
    summary = train.run(config, str(tmp_path / "run"))
    assert summary["eval"]["count"] == 8 and np.isfinite(summary["eval"]["Student/loss"])
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    last = [r for r in records if r["kind"] == "train"][-1]
    assert last["step"] == 4  # 16 images / batch 4, one epoch
    assert KEYS[method] <= set(last) and all(np.isfinite(last[k]) for k in KEYS[method])
    assert not any(k.startswith("loss/") for k in last)  # PaddleClas' names instead of kdjax's
    assert os.path.isfile(tmp_path / "run" / "best" / "spec.json")


def test_cli_takes_o_flags_and_refuses_by_yaml_path(data, tmp_path):
    path = seed_yaml("dkd", tmp_path)
    common = [sys.executable, "-m", "kdjax.main", f"--config=configs/paddleclas.py:{path}"]
    flags = [a for o in tiny_overrides(data) + SMALL["dkd"] for a in ("-o", o)]
    bad = subprocess.run(common + flags + ["-o", "Optimizer.lr.name=Linear", f"--workdir={tmp_path / 'bad'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (f"kdjax: error: {path}: Optimizer.lr.name: no kdjax translation for "
                                                   f"the 'Linear' schedule; translated: Cosine, Piecewise, Step, "
                                                   f"MultiStepDecay, ConstLR (or a plain number)")
    teacher = random_export(tmp_path / "teacher", "convnet_teacher")
    ok = subprocess.run(common + flags + ["-o", "Global.epochs=0.5", f"--config.models.Teacher.init={teacher}",
                                          f"--workdir={tmp_path / 'run'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f if '"train"' in line][-1]
    assert last["step"] == 2  # -o Global.epochs=0.5 after the others: half of the 4 steps
    assert {"CELoss_Student", "loss_dkd_Student_Teacher"} <= set(last)
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["models"]["Teacher"]["init"] == teacher  # --config.* applied after the -o translation


def test_mode_check_prints_the_translation_and_what_is_missing(tmp_path):
    """--mode=check on a YAML whose dataset and pretrained weights are not here: the translation as a person reads it,
    the missing inputs named with their YAML fields, exit 0, nothing written (no --workdir needed)."""
    path = seed_yaml("dkd", tmp_path)
    before = sorted(os.listdir(tmp_path))
    out = subprocess.run([sys.executable, "-m", "kdjax.main", f"--config=configs/paddleclas.py:{path}",
                          "--mode=check", "-o", "Global.epochs=3"],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, KDJAX_PRETRAINED_DIR=str(tmp_path / "no_weights")))
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert f"translated from the PaddleClas YAML {path} with -o Global.epochs=3" in text
    assert "models.Teacher: ResNet34 (frozen)" in text and "logged as: loss_dkd_Student_Teacher" in text
    assert "train: 3 epochs" in text
    missing = text.split("missing on this machine:")[1]
    assert "(DataLoader.Train.dataset.image_root): no such directory" in missing
    assert "config.models.Teacher.init" in missing and "ResNet34_pretrained.pdparams" in missing
    assert sorted(os.listdir(tmp_path)) == before
