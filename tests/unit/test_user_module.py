"""A user's own Flax module as `arch="file.py:Class"` / `"package.module:Class"`: resolution and its errors, the
train-flag convention, capture by module path, and export provenance. tests/e2e/test_user_module_runs.py trains one."""

import os
import shutil
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.config.check import check_captures, check_config
from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.errors import CheckpointError, ConfigError
from kdjax.models import get_model, user_module
from kdjax.models.distillation import DistillationModel, build_submodels
from kdjax.weights.export_dir import build_from_spec, load_export, make_spec, save_export

SOURCE = textwrap.dedent('''
    import flax.linen as nn
    import jax.numpy as jnp


    class Stage(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Conv(self.width, (3, 3), strides=2, padding=1, use_bias=False)(x)
            return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))


    class Backbone(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x, train: bool):
            return Stage(2 * self.width, name="stage2")(Stage(self.width, name="stage1")(x, train), train)


    class TinyNet(nn.Module):
        num_classes: int = 10
        width: int = 4

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = jnp.mean(Backbone(self.width, name="backbone")(x, train), axis=(1, 2))
            return nn.Dense(self.num_classes, name="head")(x)


    class NoFlagBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(nn.BatchNorm(use_running_average=False)(x).mean((1, 2)))


    class FixedWidth(nn.Module):
        """No num_classes field, no train flag; dropout switched by `deterministic`."""
        @nn.compact
        def __call__(self, x, deterministic: bool = True):
            x = nn.Dropout(0.5)(x.reshape(x.shape[0], -1), deterministic=deterministic)
            return nn.Dense(10, name="out")(x)
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_nets.py"
    path.write_text(SOURCE)
    return str(path)


def _config(arch, capture=(), **kwargs):
    c = base_config()
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=["blocks[1]"])
    c.models.Student = model_entry(arch, capture=capture, **kwargs)
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    return c


X = jnp.zeros((2, 28, 28, 1))


def test_file_class_resolves_and_variables_are_the_modules_own(user_file):
    model = get_model(f"{user_file}:TinyNet", num_classes=7, width=3)
    assert isinstance(model, user_module.UserModel) and model.mode_arg == "train"
    ours = jax.eval_shape(lambda: model.init(jax.random.key(0), X))
    ctor, origin = user_module.resolve(f"{user_file}:TinyNet")
    theirs = jax.eval_shape(lambda: ctor(num_classes=7, width=3).init(jax.random.key(0), X))
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    assert origin == {"file": user_file, "sha256": origin["sha256"], "class": "TinyNet"}


def test_module_path_form(user_file, monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(user_file))
    model = get_model("my_nets:TinyNet", width=2)
    assert jax.eval_shape(lambda: model.init(jax.random.key(0), X))["params"]["head"]["kernel"].shape == (4, 10)


@pytest.mark.parametrize("arch,field,message", [
    ("missing_dir/nets.py:TinyNet", "models.Student.arch", "does not exist"),
    ("{file}:TinyNett", "models.Student.arch", r"defines no 'TinyNett'.*TinyNet"),
    ("no_such_package_kdjax.nets:TinyNet", "models.Student.arch", "cannot import module"),
])
def test_resolution_errors_name_the_arch_field(user_file, arch, field, message):
    with pytest.raises(ConfigError, match=message) as info:
        check_config(_config(arch.format(file=user_file)))
    assert info.value.field == field


def test_rejected_kwargs_name_the_kwargs_field(user_file):
    with pytest.raises(ConfigError, match="does not accept these kwargs") as info:
        build_submodels(_config(f"{user_file}:TinyNet", depth=3).models, 10)
    assert info.value.field == "models.Student.kwargs"


def test_num_classes_only_when_the_constructor_takes_it(user_file):
    subs = build_submodels(_config(f"{user_file}:FixedWidth").models, 10)
    assert "num_classes" not in subs["Student"].kwargs and subs["Student"].module.mode_arg == "deterministic"
    assert build_submodels(_config(f"{user_file}:TinyNet").models, 10)["Student"].kwargs["num_classes"] == 10


def test_deterministic_flag_follows_the_mode(user_file):
    model = get_model(f"{user_file}:FixedWidth")
    x = jnp.ones((2, 28, 28, 1))
    v = jax.jit(model.init)(jax.random.key(0), x)
    run = jax.jit(lambda v, x, r, train: model.apply(v, x, train=train, rngs={"dropout": r}), static_argnums=3)
    eval_out = run(v, x, jax.random.key(1), False)
    np.testing.assert_allclose(eval_out, run(v, x, jax.random.key(2), False))
    assert not np.allclose(run(v, x, jax.random.key(1), True), eval_out)  # dropout on in training


def test_capture_by_module_path_and_unknown_path_lists_paths(user_file):
    cfg = _config(f"{user_file}:TinyNet", capture=["backbone/stage2"])
    model = DistillationModel(build_submodels(cfg.models, 10))
    names = model.feature_names("Student", X)
    assert {"backbone", "backbone/stage1", "backbone/stage2", "head"} <= set(names)
    variables = jax.eval_shape(model.init_variables, jax.random.key(0), X)
    outputs, _ = jax.eval_shape(
        lambda v, x: model.apply({"Student": v["Student"]["params"]}, {"Student": v["Student"]["batch_stats"]},
                                 {"Teacher": v["Teacher"]}, x, train=True, rng=jax.random.key(0)), variables, X)
    assert outputs["Student"]["backbone/stage2"].shape == (2, 7, 7, 8)
    with cfg.unlocked():
        cfg.models.Student.capture = ("backbone/stage3",)
    with pytest.raises(ConfigError, match=r"records no feature 'backbone/stage3'.*backbone/stage1.*backbone/stage2") \
            as info:
        check_captures(cfg, {n: model.feature_names(n, X) for n in model.names})
    assert info.value.field == "models.Student.capture"


def test_batchnorm_without_a_mode_flag_is_refused(user_file):
    model = DistillationModel(build_submodels(_config(f"{user_file}:NoFlagBN").models, 10))
    with pytest.raises(ConfigError, match="add `train: bool = False`") as info:
        model.feature_names("Student", X)
    assert info.value.field == "models.Student.arch"


def test_export_records_the_file_and_a_moved_file_fails_clearly(user_file, tmp_path):
    arch = f"{user_file}:TinyNet"
    model = get_model(arch, num_classes=10, width=2)
    variables = jax.jit(model.init)(jax.random.key(0), X)
    spec = make_spec(arch, {"width": 2}, 10, (28, 28, 1))
    assert spec["user_module"]["file"] == user_file and spec["user_module"]["class"] == "TinyNet"
    export = save_export(str(tmp_path / "export"), variables, spec)
    loaded, spec2 = load_export(export)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 28, 28, 1)), jnp.float32)
    apply = lambda m, v: jax.jit(lambda v, x: m.apply(v, x))(v, x)  # noqa: E731
    np.testing.assert_allclose(apply(build_from_spec(spec2), loaded), apply(model, variables), rtol=1e-6)
    # the config may name the file by another (relative) path: still the same arch for `init`
    rel = os.path.relpath(user_file)
    assert user_module.same_arch(spec2, f"{rel}:TinyNet") and not user_module.same_arch(spec2, f"{rel}:NoFlagBN")
    shutil.move(user_file, user_file + ".moved")
    with pytest.raises(CheckpointError, match="no longer exists"):
        build_from_spec(spec2)
