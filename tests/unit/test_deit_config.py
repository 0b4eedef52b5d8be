"""configs/deit.py: the offline default validates and builds the DeiT student it documents; the ImageNet preset is
DeiT's recipe, asks for the teacher's weights, and its student / teacher outputs pair for the deit loss (shapes only).
tests/e2e/test_deit_run.py trains the offline default."""

import jax
import jax.numpy as jnp
import pytest

from conftest import load_config

from kdjax.config.check import check_config
from kdjax.errors import ConfigError
from kdjax.losses import build_losses
from kdjax.models.distillation import DistillationModel, build_submodels
from kdjax.models.layers import count_params


def test_offline_default_validates_and_builds_the_documented_student():
    cfg = load_config("configs/deit.py")
    check_config(cfg)
    subs = build_submodels(cfg.models, 10)
    student = subs["Student"].module
    assert student.distilled and (student.img_size, student.patch_size, student.in_chans) == (28, 7, 1)
    v = jax.eval_shape(lambda: student.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))))
    assert count_params(v) == 205_844  # the docstring's figure
    assert cfg.optim.name == "adamw" and cfg.models.Teacher.init == "train"


def test_imagenet_preset_is_deits_recipe_and_needs_the_teacher():
    cfg = load_config("configs/deit.py", "imagenet")
    with pytest.raises(ConfigError, match=r"models\.Teacher\.init"):
        check_config(cfg)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.warmup_epochs) \
        == (1024, 300.0, 1e-3, 0.05, 5.0)
    assert (cfg.data.mixup_alpha, cfg.data.cutmix_alpha, cfg.losses.deit.params.epsilon) == (0.8, 1.0, 0.1)
    assert cfg.models.Student.arch == "deit_tiny_distilled_patch16_224"
    model = DistillationModel(build_submodels(cfg.models, 1000))
    losses = build_losses(list(cfg.losses.values()))
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)

    def outputs(x):
        v = model.init_variables(jax.random.key(0), x)
        params = {"Student": v["Student"]["params"]}
        out, _ = model.apply(params, {}, {"Teacher": v["Teacher"]}, x, train=True, rng=jax.random.key(0))
        return out

    out = jax.eval_shape(outputs, x)
    assert out["Student"]["logits_dist"].shape == out["Teacher"]["logits"].shape == (2, 1000)
    losses.shape_check(out)


def test_unknown_preset():
    with pytest.raises(ValueError, match="imagenet"):
        load_config("configs/deit.py", "cifar100")
