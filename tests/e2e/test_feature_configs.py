"""The configs of the feature/relation methods (reviewkd, pkt, sp, nst, vid, ofd, ickd) and KD + DOT: each offline
default trains a few steps on real data with finite logged terms, and each CIFAR-100 preset validates against the
real resnet32x4 / resnet8x4 shapes (captured features, pairable shapes, OFD's teacher BatchNorms)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config, tiny

METHODS = ["reviewkd", "pkt", "sp", "nst", "vid", "ofd", "ickd", "kd_dot"]


@pytest.fixture(scope="module")
def teacher_export(tmp_path_factory):
    """One tiny convnet_teacher, trained once, used as the frozen teacher of every config."""
    from kdjax import train

    cfg = tiny(load_config("configs/kd.py"), train_limit=512, epochs=0.25, pretrain_epochs=1.0)
    workdir = tmp_path_factory.mktemp("teacher")
    train.run(cfg, str(workdir))
    return str(workdir / "pretrain" / "Teacher" / "export")


@pytest.mark.parametrize("method", METHODS)
def test_feature_method_config_trains_a_few_steps(method, teacher_export, tmp_path):
    from kdjax import train

    cfg = tiny(load_config(f"configs/{method}.py"), train_limit=256, epochs=1.0)
    with cfg.unlocked():
        cfg.models.Teacher.init = teacher_export
    summary = train.run(cfg, str(tmp_path))
    assert 0.0 <= summary["eval"]["Student/top1"] <= 1.0
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f if '"train"' in line]
    assert records and all(np.isfinite(r["loss"]) for r in records)
    for entry in cfg.losses.values():
        terms = [k for k in records[-1] if k.startswith(f"loss/{entry.type}/")]
        assert terms and all(np.isfinite(records[-1][k]) for k in terms), (entry.type, sorted(records[-1]))
    assert os.path.isfile(tmp_path / "export" / "spec.json")


@pytest.mark.parametrize("method", [m for m in METHODS] + ["ickd:cifar100_kl"])
def test_cifar100_preset_validates_against_the_real_models(method):
    from kdjax.config.check import check_config, check_model_outputs
    from kdjax.errors import ConfigError
    from kdjax.losses import build_losses
    from kdjax.models.distillation import DistillationModel, build_submodels, normalize

    name, _, preset = method.partition(":")
    cfg = load_config(f"configs/{name}.py", preset or "cifar100")
    with pytest.raises(ConfigError, match=r"models\.Teacher\.init"):
        check_config(cfg)  # the only thing the preset lacks: the user's teacher
    with cfg.unlocked():
        cfg.models.Teacher.init = "/some/teacher"
    check_config(cfg)
    assert (cfg.models.Teacher.arch, cfg.models.Student.arch) == ("resnet32x4", "resnet8x4")
    model = DistillationModel(build_submodels(cfg.models, 100))
    sample = normalize(jnp.zeros((2, 32, 32, 3), jnp.uint8), cfg.data.mean, cfg.data.std)
    check_model_outputs(cfg, model, build_losses(list(cfg.losses.values())), sample, 100)
    if name == "ofd":  # margins come from the real resnet32x4 BatchNorms
        variables = jax.eval_shape(model.init_variables, jax.random.PRNGKey(0), sample)
        for path in cfg.losses.ofd.params.teacher_bns:
            node = variables["Teacher"]["params"]
            for part in path.split("/"):
                node = node[part]
            assert node["scale"].shape[0] in (64, 128, 256)
