"""Pre-ReLU captures (`blocks_preact[i]`, `stages_preact[i]`: OFD, ReviewKD's teacher side) are the recorded features
before their ReLU, and a frozen model with `train_mode=True` runs on batch statistics without changing them."""

import jax
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from kdjax.config.check import check_config
from kdjax.config.defaults import model_entry
from kdjax.errors import ConfigError
from kdjax.models import get_model
from kdjax.models.distillation import DistillationModel, build_submodels
from kdjax.models.features import COLLECTION, collect


def _random_variables(shapes, seed=0):
    """Variables of the given shapes filled from numpy (an RNG init costs more to compile than these tests run);
    BatchNorm statistics away from 0 / 1, so "before the ReLU" is not trivially the BN input."""
    rng = np.random.default_rng(seed)

    def fill(path, a):
        v = rng.normal(scale=0.3, size=a.shape).astype(np.float32)
        return np.abs(v) + 0.5 if jax.tree_util.keystr(path).endswith("['var']") else v
    return jax.tree_util.tree_map_with_path(fill, shapes)


def _features(arch, shape):
    module = get_model(arch, num_classes=10)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    variables = _random_variables(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, train=False)))
    _, mutated = jax.jit(lambda v, x: module.apply(v, x, train=False, mutable=[COLLECTION]))(variables, x)
    return collect(mutated)


@pytest.mark.parametrize("arch,shape,pre,post,n", [("convnet_student", (2, 28, 28, 1), "blocks_preact", "blocks", 3),
                                                  ("resnet8", (2, 16, 16, 3), "stages_preact", "stages", 3)])
def test_preact_is_the_feature_before_its_relu(arch, shape, pre, post, n):
    f = _features(arch, shape)
    for i in range(n):
        a, b = np.asarray(f[f"{pre}[{i}]"]), np.asarray(f[f"{post}[{i}]"])
        assert a.shape == b.shape and (a < 0).any()
        np.testing.assert_array_equal(np.maximum(a, 0), b)


def test_wrn_preact_is_the_next_batchnorm_of_each_stage_output():
    f = _features("wrn_16_1", (2, 16, 16, 3))
    for i in range(3):
        assert f[f"stages_preact[{i}]"].shape == f[f"stages[{i}]"].shape
        assert not np.allclose(f[f"stages_preact[{i}]"], f[f"stages[{i}]"])
    pooled = np.maximum(np.asarray(f["stages_preact[2]"]), 0).mean(axis=(1, 2))
    np.testing.assert_allclose(pooled, f["avg_pool"], rtol=1e-5, atol=1e-6)  # avg_pool = pool(relu(bn1(stages[2])))


def test_frozen_train_mode_uses_batch_statistics_and_keeps_them():
    def model(train_mode):
        models = ml_collections.ConfigDict({
            "Student": model_entry("convnet_student"),
            "Teacher": model_entry("convnet_teacher", frozen=True, init="x", capture=["blocks_preact[2]"],
                                   train_mode=train_mode)})
        return DistillationModel(build_submodels(models, 10))

    images = np.random.default_rng(2).normal(size=(8, 28, 28, 1)).astype(np.float32)
    eval_model, batch_model = model(False), model(True)
    variables = _random_variables(jax.eval_shape(eval_model.init_variables, jax.random.PRNGKey(0), images))
    with_bn = jax.tree_util.tree_map_with_path(  # teacher BatchNorm scale 1 / bias 0: batch-normalised maps have mean 0
        lambda path, a: (np.ones_like(a) if jax.tree_util.keystr(path).endswith("['scale']") else
                         np.zeros_like(a) if jax.tree_util.keystr(path).endswith("['bias']") else a),
        variables["Teacher"])
    teacher = {"Teacher": with_bn}
    student = ({"Student": variables["Student"]["params"]}, {"Student": variables["Student"]["batch_stats"]})

    def run(m, train):
        return jax.jit(lambda s, t, x: m.apply(*s, t, x, train=train, rng=jax.random.PRNGKey(0)))(student, teacher,
                                                                                                 images)
    (out_eval, _), (out_batch, stats) = run(eval_model, True), run(batch_model, True)
    feat = np.asarray(out_batch["Teacher"]["blocks_preact[2]"])
    np.testing.assert_allclose(feat.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    assert not np.allclose(feat, out_eval["Teacher"]["blocks_preact[2]"])
    assert set(stats) == {"Student"}  # a frozen model's statistics are never returned for update
    out_infer, _ = run(batch_model, False)  # evaluation runs every model in inference mode
    np.testing.assert_array_equal(out_infer["Teacher"]["blocks_preact[2]"], out_eval["Teacher"]["blocks_preact[2]"])
    assert "train_mode" not in model_entry("convnet_teacher")  # only where set: other configs keep their identity


def test_train_mode_on_a_trained_model_is_refused():
    """A trained model always runs in training mode; train_mode there would be silently meaningless."""
    config = load_config("configs/ofd.py")
    config.models.Student.train_mode = True
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert e.value.field == "models.Student.train_mode" and "frozen" in str(e.value)
