"""The PaddleClas YAML translation field by field: PaddleClas' reading rules and -o overrides, refusals that name the
YAML path, learning-rate schedules equal to PaddleClas' step by step (an independent numpy rendering of paddle's
LinearWarmup / CosineAnnealingDecay / PiecewiseDecay / StepDecay / MultiStepDecay), data pipelines, describe(), and
real PaddleClas configuration files when a checkout is available (KDJAX_PADDLECLAS_DIR)."""

import math
import os

import numpy as np
import pytest

from conftest import REPO
from kdjax.config.fields import check_fields

from test_paddleclas_seed import seed_yaml


def _translate(method, tmp_path, *overrides):
    from kdjax.config.paddleclas import translate_file

    return translate_file(seed_yaml(method, tmp_path), list(overrides))


# ---- reading rules and overrides -----------------------------------------------------------------------------

def test_yaml_is_read_like_paddleclas(tmp_path):
    from kdjax.config.paddleclas import load_yaml

    path = tmp_path / "x.yaml"
    path.write_text("Optimizer:\n  weight_decay: 1e-4\n  scale: 1.0/255.0\n  lst: ['1e-4', 2]\n")
    d = load_yaml(str(path))
    assert d["Optimizer"]["weight_decay"] == 1e-4  # YAML reads a string; PaddleClas literal_evals mapping values
    assert d["Optimizer"]["scale"] == "1.0/255.0"  # not a literal: stays a string (NormalizeImage evaluates it)
    assert d["Optimizer"]["lst"] == ["1e-4", 2]  # strings inside lists are left alone


def test_overrides_walk_lists_by_index_create_keys_and_parse_literals():
    from kdjax.config.paddleclas import apply_overrides
    from kdjax.config.paddleclas.context import YamlError

    cfg = {"Arch": {"models": [{"Teacher": {"pretrained": True}}]}, "Global": {"epochs": 100}}
    out = apply_overrides(cfg, ["Arch.models.0.Teacher.pretrained=False", "Global.epochs=2",
                                "Global.output_dir=./out", "New.key.deep=[1, 2]"])
    assert out["Arch"]["models"][0]["Teacher"]["pretrained"] is False
    assert out["Global"]["epochs"] == 2 and out["Global"]["output_dir"] == "./out"
    assert out["New"] == {"key": {"deep": [1, 2]}}
    assert cfg["Global"]["epochs"] == 100  # the input is not modified
    with pytest.raises(YamlError, match="Arch.models.3.Teacher"):
        apply_overrides(cfg, ["Arch.models.3.Teacher.pretrained=False"])
    with pytest.raises(YamlError, match="KEY=VALUE"):
        apply_overrides(cfg, ["Global.epochs"])


def test_config_argument_carries_overrides():
    from kdjax.config.paddleclas import parse_config_arg

    assert parse_config_arg("a.yaml") == ("a.yaml", [])
    assert parse_config_arg("a.yaml,-o,Global.epochs=2,-o,Arch.models.0.Teacher.return_patterns=['x', 'y']") == (
        "a.yaml", ["Global.epochs=2", "Arch.models.0.Teacher.return_patterns=['x', 'y']"])


# ---- refusals: one line naming the YAML path -------------------------------------------------------------------

REFUSALS = [
    ("dkd", ["Loss.Train.1.DistillationDKDLoss.foo=1"], "Loss.Train.1.DistillationDKDLoss.foo"),
    ("dkd", ["Loss.Train.1.DistillationDKDLoss.model_name_pairs=[['Student', 'Nobody']]"],
     "Loss.Train.1.DistillationDKDLoss.model_name_pairs"),
    ("dml", ["Loss.Train.1.DistillationDMLLoss.weight_ratio=True"], "Loss.Train.1.DistillationDMLLoss.weight_ratio"),
    ("dkd", ["Loss.Train.0={'DistillationMultiLabelLoss': {'weight': 1.0, 'model_names': ['Student']}}"],
     "Loss.Train.0.DistillationMultiLabelLoss"),
    ("wsl", ["Loss.Train.1.DistillationWSLLoss.use_target_as_gt=True"],
     "Loss.Train.1.DistillationWSLLoss.use_target_as_gt"),
    ("mgd", ["Loss.Train.1.DistillationPairLoss.base_loss_name=ICKDLoss"],
     "Loss.Train.1.DistillationPairLoss.base_loss_name"),
    ("ssld", ["Loss.Train.0.DistillationDMLLoss.model_name_pairs=[['Student', 'Teacher'], ['Teacher', 'Student']]"],
     "Loss.Train"),
    ("dkd", ["Loss.Eval.0={'DistillationDKDLoss': {'weight': 1.0}}"], "Loss.Eval.0.DistillationDKDLoss"),
    ("dkd", ["Optimizer.lr.name=Linear"], "Optimizer.lr.name"),
    ("dkd", ["Optimizer.lr.eta_min=0.001"], "Optimizer.lr.eta_min"),
    ("dkd", ["Optimizer.lr.warmup_start_lr=0.01"], "Optimizer.lr.warmup_start_lr"),
    ("dkd", ["Optimizer.lr.by_epoch=True"], "Optimizer.lr.by_epoch"),
    ("dkd", ["Optimizer.clip_norm=1.0"], "Optimizer.clip_norm"),
    ("dkd", ["Optimizer.name=RMSProp"], "Optimizer.name"),
    ("dkd", ["Optimizer.no_weight_decay_name=bn"], "Optimizer.no_weight_decay_name"),
    ("dkd", ["Optimizer.regularizer.name=L1"], "Optimizer.regularizer.name"),
    ("dkd", ["Global.pretrained_model=./output/best_model"], "Global.pretrained_model"),
    ("dkd", ["Global.checkpoints=./output/epoch_3"], "Global.checkpoints"),
    ("dkd", ["Global.use_multilabel=True"], "Global.use_multilabel"),
    ("dkd", ["Global.image_shape=[3, 256, 256]"], "Global.image_shape"),
    ("dkd", ["EMA.decay=0.9999"], "EMA"),
    ("dkd", ["DataLoader.Train.dataset.name=MultiLabelDataset"], "DataLoader.Train.dataset.name"),
    ("dkd", ["DataLoader.Train.dataset.transform_ops.2.RandFlipImage.flip_code=0"],
     "DataLoader.Train.dataset.transform_ops.2.RandFlipImage.flip_code"),
    ("dkd", ["DataLoader.Train.dataset.transform_ops.3.NormalizeImage.scale=0.5"],
     "DataLoader.Train.dataset.transform_ops.3.NormalizeImage.scale"),
    ("dkd", ["DataLoader.Train.dataset.transform_ops.1={'RandomErasing': {'EPSILON': 0.25}}"],
     "DataLoader.Train.dataset.transform_ops.1.RandomErasing"),
    ("dkd", ["DataLoader.Train.dataset.transform_ops.1.RandCropImage.interpolation=lanczos"],
     "DataLoader.Train.dataset.transform_ops.1.RandCropImage.interpolation"),
    ("dkd", ["DataLoader.Eval.dataset.transform_ops.2.CropImage.size=192"], "DataLoader.Eval.dataset.transform_ops"),
    ("dkd", ["DataLoader.Train.sampler.shuffle=False"], "DataLoader.Train.sampler.shuffle"),
    ("dkd", ["DataLoader.Train.dataset.batch_transform_ops=[{'MixupOperator': {'alpha': 0.2}}]"],
     "DataLoader.Train.dataset.batch_transform_ops"),
    ("dkd", ["Arch.models.1.Student.name=MobileNetV2"], "Arch.models.1.Student.name"),
    ("dkd", ["Arch.models.1.Student.name=Res2Net50_26w_4s"], "Arch.models.1.Student.name"),
    ("dkd", ["Arch.models.1.Student.lr_mult_list=[0.1, 0.1, 0.2, 0.2, 0.3]"], "Arch.models.1.Student.lr_mult_list"),
    ("mgd", ["Arch.models.0.Teacher.return_stages=[9]"], "Arch.models.0.Teacher.return_stages"),
    ("dkd", ["Arch.infer_model_name=Nobody"], "Arch.infer_model_name"),
    ("dkd", ["Arch.freeze_params_list=[True]"], "Arch.freeze_params_list"),
    ("afd", ["Arch.models.1.Student.models.1.LinearTransformStudent.qk_dim=64"], "Loss.Train.2.AFDLoss.qk_dim"),
    ("afd", ["Arch.models.0.Teacher.freeze_params_list=[True, True]"], "Arch.models.0.Teacher.freeze_params_list.1"),
]


@pytest.mark.parametrize("method,overrides,path", REFUSALS, ids=[r[2] + "|" + r[1][0][:30] for r in REFUSALS])
def test_untranslatable_fields_are_refused_by_yaml_path(method, overrides, path, tmp_path):
    from kdjax.config.paddleclas import YamlError
    from kdjax.errors import ConfigError

    with pytest.raises(YamlError) as e:
        _translate(method, tmp_path, *overrides)
    text = str(e.value)
    assert text.startswith(str(tmp_path / f"{method}.yaml") + f": {path}"), text
    assert isinstance(e.value, ConfigError)  # the CLIs print it as one line, exit 2


def test_mobilenetv3_is_refused_by_name_until_the_zoo_has_it(tmp_path):
    from kdjax.config.paddleclas import YamlError
    from kdjax.models import list_models

    if "MobileNetV3_small_x1_0" in list_models():
        c = _translate("dkd", tmp_path, "Arch.models.1.Student.name=MobileNetV3_small_x1_0")
        assert c.models.Student.arch == "MobileNetV3_small_x1_0"
    else:
        with pytest.raises(YamlError, match=r"Arch\.models\.1\.Student\.name: MobileNetV3_small_x1_0 is not in kdjax's "
                                            r"model zoo yet"):
            _translate("dkd", tmp_path, "Arch.models.1.Student.name=MobileNetV3_small_x1_0")


def test_duplicate_keys_and_single_entry_weight(tmp_path):
    """CombinedLoss: a key written twice keeps the last value (refused); a single entry's weight is ignored."""
    from kdjax.config.paddleclas import YamlError, load_yaml, translate

    base = load_yaml(seed_yaml("dkd", tmp_path))
    twice = dict(base, Loss={"Train": [{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                                       {"DistillationGTCELoss": {"weight": 0.5, "model_names": ["Student"]}}]})
    with pytest.raises(YamlError, match=r"Loss\.Train\.1\.DistillationGTCELoss: writes the value 'CELoss_Student'"):
        translate(twice, "x.yaml")
    single = dict(base, Loss={"Train": [{"DistillationDKDLoss": {"weight": 3.0,
                                                                 "model_name_pairs": [["Student", "Teacher"]]}}]})
    c = translate(single, "x.yaml")
    assert c.losses.dkd.weight == 1.0
    assert any("Loss.Train.0.weight: 3 has no effect" in n for n in c.paddleclas.notes)


# ---- what is translated ---------------------------------------------------------------------------------------

def test_arch_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("KDJAX_PRETRAINED_DIR", str(tmp_path / "weights"))
    c = _translate("ssld", tmp_path)
    assert c.models.Teacher.init == str(tmp_path / "weights" / "ResNet50_vd_ssld_pretrained.pdparams")  # use_ssld
    assert c.models.Teacher.frozen and not c.models.Student.frozen and c.export_model == "Student"
    c = _translate("mgd", tmp_path, "Arch.models.0.Teacher.return_stages=[1, 3]",
                   "Arch.models.1.Student.pretrained=./r18", "Arch.models.1.Student.class_num=100")
    assert list(c.models.Teacher.capture) == ["blocks[6]", "blocks[15]"]  # PaddleClas' ResNet34 stages pattern
    assert c.models.Student.init == "./r18.pdparams"  # PaddleClas appends .pdparams
    assert c.data.num_classes == 100 and c.models.Teacher.kwargs.num_classes == 1000
    c = _translate("afd", tmp_path)  # AttentionModel: the backbone is the model, the head part of the afd loss
    assert (c.models.Teacher.arch, c.models.Student.arch) == ("ResNet34", "ResNet18")
    assert c.models.Teacher.frozen and list(c.losses.afd.t_keys) == [f"blocks[{i}]" for i in range(16)]


def _paddle_lr(name, base, epochs, spe, warmup=0, **kw):
    """paddle's schedules as PaddleClas builds them, per step: LinearWarmup(start 0) then the wrapped schedule from
    its own step 0 (written from the paddle.optimizer.lr formulas, not with kdjax)."""
    w = round(warmup * spe)
    out = []
    for t in range(int(epochs * spe)):
        if t < w:
            out.append(base * t / w)
            continue
        u = t - w
        if name == "Cosine":
            out.append(0.5 * base * (1 + math.cos(math.pi * u / ((epochs - warmup) * spe))))
        elif name == "Piecewise":
            bounds, values = [e * spe for e in kw["decay_epochs"]], kw["values"]
            out.append(next((values[i] for i, b in enumerate(bounds) if u < b), values[-1]))
        elif name == "Step":
            out.append(base * kw["gamma"] ** (u // int(kw["step_size"] * spe)))
        elif name == "MultiStepDecay":
            out.append(base * kw["gamma"] ** sum(u >= m * spe for m in kw["milestones"]))
    return np.array(out)


SCHEDULES = [
    ("Cosine", dict(learning_rate=0.2, warmup_epoch=2)),
    ("Cosine", dict(learning_rate=0.1)),
    ("Piecewise", dict(decay_epochs=[3, 6, 9], values=[0.1, 0.01, 0.001, 0.0001], warmup_epoch=2)),
    ("Step", dict(learning_rate=0.1, step_size=4, gamma=0.5, warmup_epoch=1)),
    ("MultiStepDecay", dict(learning_rate=0.1, milestones=[5, 8], gamma=0.1, warmup_epoch=0)),
]


@pytest.mark.parametrize("name,params", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_learning_rate_schedule_equals_paddleclas_step_by_step(name, params, tmp_path):
    import ml_collections

    from kdjax.config.paddleclas import load_yaml, translate
    from kdjax.steps import lr_schedule

    base = load_yaml(seed_yaml("dkd", tmp_path))
    base["Global"]["epochs"] = 12
    base["Optimizer"]["lr"] = dict(name=name, **params)
    c = translate(base, "x.yaml")
    spe = 10
    schedule = lr_schedule(ml_collections.ConfigDict(c.optim), spe, 12 * spe)
    ours = np.array([float(schedule(t)) for t in range(12 * spe)])
    kw = {k: v for k, v in params.items() if k not in ("learning_rate", "warmup_epoch")}
    lr = params.get("learning_rate", params.get("values", [0])[0])
    theirs = _paddle_lr(name, lr, 12, spe, params.get("warmup_epoch", 0), **kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7 * lr)  # float32 cosine near its end


def test_piecewise_with_learning_rate_decays_every_30_epochs_like_paddleclas(tmp_path):
    c = _translate("dkd", tmp_path, "Optimizer.lr={'name': 'Piecewise', 'learning_rate': 0.1, "
                                    "'decay_epochs': [5], 'values': [0.1, 0.05]}")
    assert (c.optim.schedule, tuple(c.optim.milestones), c.optim.decay_rate) == ("step", (30.0, 60.0, 90.0), 0.1)


def test_optimizer_fields(tmp_path):
    c = _translate("dkd", tmp_path)  # Momentum 0.9, L2 1e-4
    assert (c.optim.name, c.optim.momentum, c.optim.nesterov, c.optim.weight_decay) == ("sgd", 0.9, False, 1e-4)
    c = _translate("dkd", tmp_path, "Optimizer={'name': 'AdamW', 'weight_decay': 0.05, "
                                    "'lr': {'name': 'Cosine', 'learning_rate': 0.001}}")
    assert (c.optim.name, c.optim.weight_decay, c.optim.lr) == ("adamw", 0.05, 0.001)


def test_data_and_budget(tmp_path):
    c = _translate("dkd", tmp_path, "kdjax.cards=4", "DataLoader.Eval.dataset.transform_ops.1.ResizeImage."
                                                     "resize_short=320", "Global.eval_interval=2")
    d = c.data
    assert (d.source, d.augment, d.image_size, d.num_classes) == ("list", "imagenet", 224, 1000)
    assert d.eval_crop_ratio == pytest.approx(224 / 320)
    assert tuple(d.mean) == (0.485, 0.456, 0.406) and tuple(d.std) == (0.229, 0.224, 0.225)
    assert (c.train.batch_size, c.train.eval_batch_size) == (256, 256)  # per-card 64 × 4 cards
    assert (c.train.epochs, c.train.eval_every_epochs, c.train.log_every_steps) == (100.0, 2.0, 10)
    assert c.metric_names == "paddleclas"


def test_describe_prints_the_translation_and_what_is_missing(tmp_path, monkeypatch):
    from kdjax.config.paddleclas import describe

    monkeypatch.setenv("KDJAX_PRETRAINED_DIR", str(tmp_path / "weights"))
    text = describe(_translate("dkd", tmp_path))
    assert "models.Teacher: ResNet34 (frozen), init " in text and "← Arch.models.0.Teacher" in text
    assert "logged as: loss_dkd_Student_Teacher" in text and "logged as: CELoss_Student" in text
    assert "config.data.root = ./dataset/ILSVRC2012/ (DataLoader.Train.dataset.image_root): no such directory" in text
    assert "ResNet34_pretrained.pdparams" in text and "legendary_models/ResNet34_pretrained.pdparams" in text
    assert "RandCropImage" in text  # the crop-sampling note


def test_translate_cli_prints_and_refuses(tmp_path):
    import subprocess
    import sys

    path = seed_yaml("dkd", tmp_path)
    ok = subprocess.run([sys.executable, "-m", "kdjax.tools.paddleclas_translate", path, "-o", "Global.epochs=3",
                         "--config.models.Teacher.init=train"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "train: 3 epochs" in ok.stdout and "init train" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "kdjax.tools.paddleclas_translate", path, "-o",
                          "Optimizer.name=RMSProp"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"kdjax.tools.paddleclas_translate: error: {path}: Optimizer.name: "
                                               f"no kdjax translation for 'RMSProp'; translated: Momentum, SGD, AdamW"]


# ---- real PaddleClas configuration files (tests/data/paddleclas_configs/README.md) ---------------------------

PADDLECLAS = os.environ.get("KDJAX_PADDLECLAS_DIR", "")
REAL = [  # (file under ppcls/configs, the kdjax config it equals, or the YAML path it is refused at)
    ("ImageNet/Distillation/resnet34_distill_resnet18_dkd.yaml", "dkd", None),
    ("ImageNet/Distillation/resnet34_distill_resnet18_dist.yaml", "dist", None),
    ("ImageNet/Distillation/resnet34_distill_resnet18_wsl.yaml", "wsl", None),
    ("ImageNet/Distillation/resnet34_distill_resnet18_mgd.yaml", "mgd", None),
    ("ImageNet/Distillation/resnet34_distill_resnet18_pefd.yaml", "pefd", None),
    ("ImageNet/Distillation/resnet34_distill_resnet18_skd.yaml", "skd", None),
    ("ImageNet/Distillation/resnet34_distill_resnet18_afd.yaml", "afd", None),
    ("ImageNet/Distillation/PPLCNet_x2_5_ssld.yaml", "ssld", None),
    ("ImageNet/Distillation/PPLCNet_x2_5_dml.yaml", "dml", None),
    ("ImageNet/Distillation/PPLCNet_x2_5_udml.yaml", "udml", None),
    ("ImageNet/Distillation/PPLCNet_x1_0_ssld.yaml", None, None),
    ("ImageNet/Distillation/mv3_large_x1_0_distill_mv3_small_x1_0.yaml", None, None),
    ("quick_start/professional/R50_vd_distill_MV3_large_x1_0_CIFAR100.yaml", None, None),
    ("ImageNet/Distillation/res2net200_vd_distill_pphgnet_base.yaml", None, "Arch.models.0.Teacher.name"),
    ("ImageNet/PPHGNetV2/PPHGNetV2_B4_ssld_stage1.yaml", None, "Arch.models.0.Teacher.name"),
    ("ImageNet/PPHGNetV2/PPHGNetV2_B4_ssld_stage2.yaml", None, "Arch.models.0.Teacher.name"),
    ("PULC/car_exists/PPLCNet_x1_0_distillation.yaml", None,
     "DataLoader.Train.dataset.transform_ops.3.TimmAutoAugment"),
    ("PULC/code_exists/PPLCNet_x1_0_distillation.yaml", None,
     "DataLoader.Train.dataset.transform_ops.3.TimmAutoAugment"),
    ("PULC/person_exists/PPLCNet_x1_0_distillation.yaml", None,
     "DataLoader.Train.dataset.transform_ops.3.TimmAutoAugment"),
    ("PULC/safety_helmet/PPLCNet_x1_0_distillation.yaml", None,
     "DataLoader.Train.dataset.transform_ops.3.TimmAutoAugment"),
    ("PULC/text_image_orientation/PPLCNet_x1_0_distillation.yaml", None,
     "DataLoader.Train.dataset.transform_ops.2.TimmAutoAugment"),
    ("PULC/traffic_sign/PPLCNet_x1_0_distillation.yaml", None,
     "DataLoader.Train.dataset.transform_ops.2.TimmAutoAugment"),
    ("PULC/person_attribute/PPLCNet_x1_0_Distillation.yaml", None, "Global.use_multilabel"),
    ("PULC/table_attribute/PPLCNet_x1_0_distillation.yaml", None, "Global.use_multilabel"),
    ("PULC/vehicle_attribute/PPLCNet_x1_0_distillation.yaml", None, "Global.use_multilabel"),
    ("PULC/language_classification/PPLCNet_x1_0_distillation.yaml", None, "Arch.models.1.Student.stride_list"),
    ("PULC/textline_orientation/PPLCNet_x1_0_distillation.yaml", None, "Arch.models.0.Teacher.stride_list"),
    ("PULC/person_attribute/search.yaml", None, "base_config_file"),
    ("StrategySearch/person.yaml", None, "base_config_file"),
    ("GeneralRecognition/GeneralRecognition_PPLCNet_x2_5_dml.yaml", None, "Global.eval_mode"),
    ("GeneralRecognition/GeneralRecognition_PPLCNet_x2_5_udml.yaml", None, "Global.eval_mode"),
]
# what the translated files without a kdjax config of their own become: {name: arch} and the loss types
REAL_TRANSLATED = {
    "ImageNet/Distillation/PPLCNet_x1_0_ssld.yaml": ({"Teacher": "ResNet50_vd", "Student": "PPLCNet_x1_0"}, ["ssld"]),
    "ImageNet/Distillation/mv3_large_x1_0_distill_mv3_small_x1_0.yaml":
        ({"Teacher": "MobileNetV3_large_x1_0", "Student": "MobileNetV3_small_x1_0"}, ["soft_ce"]),
    "quick_start/professional/R50_vd_distill_MV3_large_x1_0_CIFAR100.yaml":
        ({"Teacher": "ResNet50_vd", "Student": "MobileNetV3_large_x1_0"}, ["soft_ce"]),
}


@pytest.mark.skipif(not os.path.isdir(os.path.join(PADDLECLAS, "ppcls", "configs")),
                    reason="no PaddleClas checkout: set KDJAX_PADDLECLAS_DIR to a clone of github.com/PaddlePaddle/"
                           "PaddleClas at the commit in tests/data/paddleclas_configs/README.md")
@pytest.mark.parametrize("name,method,refused_at", REAL, ids=[r[0].split("/")[-1] for r in REAL])
def test_real_paddleclas_configs(name, method, refused_at):
    from kdjax.config.paddleclas import YamlError, translate_file
    from kdjax.losses.entries import parse_entries

    from conftest import load_config

    path = os.path.join(PADDLECLAS, "ppcls", "configs", name)
    if refused_at:
        with pytest.raises(YamlError) as e:
            translate_file(path)
        assert str(e.value).startswith(f"{path}: {refused_at}:"), str(e.value)
        return
    c = translate_file(path)
    if method:
        key = lambda e: (e.type, e.units, e.s_key, e.t_key, e.weight, tuple(sorted(e.params.items())))  # noqa: E731
        native = load_config(f"configs/{method}.py", "imagenet")
        assert sorted(map(key, parse_entries(list(c.losses.values())))) == \
            sorted(map(key, parse_entries(list(native.losses.values()))))
        assert {n: m.arch for n, m in c.models.items()} == {n: m.arch for n, m in native.models.items()}
    else:
        archs, types = REAL_TRANSLATED[name]
        assert {n: m.arch for n, m in c.models.items()} == archs
        assert sorted(e.type for e in c.losses.values()) == types
    check_fields(c)  # every field of the translation is one kdjax knows, in type and range


def test_real_list_covers_every_distillation_yaml_of_the_checkout():
    """Every file of the checkout naming a Distillation model or loss is in REAL (translated or refused by path)."""
    import subprocess

    root = os.path.join(PADDLECLAS, "ppcls", "configs")
    if not os.path.isdir(root):
        pytest.skip("no PaddleClas checkout (KDJAX_PADDLECLAS_DIR)")
    found = subprocess.run(["grep", "-rl", "Distillation", root], capture_output=True, text=True).stdout.split()
    assert sorted(os.path.relpath(f, root) for f in found) == sorted(r[0] for r in REAL)
