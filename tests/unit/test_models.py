"""Model zoo: published parameter counts, feature names and shapes, and a few real forward passes.

Counts are PyTorch's sum(p.numel() for p in model.parameters()) (conv/linear weights and biases, BN scale and
shift; no running statistics). Sources: torchvision's model docs (ImageNet, 1000 classes); PaddleClas
(ResNet18/34 carry an extra 64->64 projection, 4,224 parameters more than torchvision's; PP-LCNet counts
equal the golden checkpoints minus BN running statistics); RepDistiller/mdistiller definitions at 100
classes (resnet8x4 1.23M, resnet32x4 7.43M, wrn_40_2 2.25M, vgg8 3.96M, ShuffleV1 0.95M, ...).
Shapes come from jax.eval_shape, so these tests trace but do not compute.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.models import get_model, list_models
from kdjax.models.features import collect
from kdjax.models.layers import channel_shuffle, count_params, paddle_avg_pool_same

PARAMS = {
    # ImageNet, 1000 classes
    "tv_resnet18": 11_689_512, "tv_resnet34": 21_797_672, "tv_resnet50": 25_557_032,
    "ResNet18": 11_693_736, "ResNet34": 21_801_896, "ResNet50": 25_557_032, "ResNet101": 44_549_160,
    "ResNet50_vd": 25_576_264, "MobileNetV2": 3_504_872,
    "PPLCNet_x0_25": 1_521_184, "PPLCNet_x0_35": 1_643_090, "PPLCNet_x0_5": 1_879_576,
    "PPLCNet_x0_75": 2_357_008, "PPLCNet_x1_0": 2_952_520, "PPLCNet_x1_5": 4_499_832,
    "PPLCNet_x2_0": 6_521_512, "PPLCNet_x2_5": 9_017_560,
    # CIFAR, 100 classes
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756, "resnet44": 667_188,
    "resnet56": 861_620, "resnet110": 1_736_564, "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156, "vgg8": 3_965_028, "vgg13": 9_462_180,
    "MobileNetV2_cifar": 812_836, "ShuffleV1": 949_258, "ShuffleV2": 1_355_528,
}
IMAGENET = {a for a in PARAMS if a[0].isupper() and a not in ("MobileNetV2_cifar", "ShuffleV1", "ShuffleV2")} | {
    a for a in PARAMS if a.startswith("tv_")}


def _input(arch, size=None):
    size = size or (224 if arch in IMAGENET else 32)
    return jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)


def _abstract(arch, size=None, **kwargs):
    model = get_model(arch, **kwargs)
    x = _input(arch, size)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    logits, mutated = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x)
    return variables, logits, {k: tuple(v.shape) for k, v in collect(mutated).items()}


def test_zoo_is_registered():
    missing = set(PARAMS) - set(list_models())
    assert not missing, f"unregistered archs: {sorted(missing)}"


@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_parameter_count(arch):
    model = get_model(arch)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert count_params(variables) == PARAMS[arch]
    assert model.num_classes == (1000 if arch in IMAGENET else 100)


def _blocks(n):
    return {f"blocks[{i}]" for i in range(n)}


FEATURES = {  # arch -> (names that must be recorded, {name: NHWC shape at 224 / 32 px, batch 2})
    "ResNet18": (_blocks(8) | {"stem", "stages[0]", "stages[3]", "avg_pool", "logits"},
                 {"stem": (2, 56, 56, 64), "blocks[1]": (2, 56, 56, 64), "blocks[7]": (2, 7, 7, 512),
                  "avg_pool": (2, 512), "logits": (2, 1000)}),
    "ResNet34": (_blocks(16), {"blocks[15]": (2, 7, 7, 512)}),
    "ResNet50_vd": (_blocks(16) | {"stages[1]"}, {"blocks[2]": (2, 56, 56, 256), "avg_pool": (2, 2048)}),
    "tv_resnet18": (_blocks(8) | {"layer1", "layer2", "layer3", "layer4"}, {"layer2": (2, 28, 28, 128)}),
    "PPLCNet_x1_0": ({"stem", "blocks2", "blocks3", "blocks4", "blocks5", "blocks6", "avg_pool", "logits"},
                     {"blocks2": (2, 112, 112, 32), "blocks6": (2, 7, 7, 512), "avg_pool": (2, 1280)}),
    "MobileNetV2": (_blocks(17) | {"stages[6]"}, {"stages[6]": (2, 7, 7, 320), "avg_pool": (2, 1280)}),
    "resnet8x4": (_blocks(3) | {"stem", "stages[2]"}, {"stages[2]": (2, 8, 8, 256), "avg_pool": (2, 256)}),
    "wrn_40_2": (_blocks(18) | {"stages[2]"}, {"stem": (2, 32, 32, 16), "stages[2]": (2, 8, 8, 128)}),
    "vgg8": ({"stem", "stages[3]"}, {"stages[3]": (2, 4, 4, 512), "avg_pool": (2, 512)}),
    "MobileNetV2_cifar": (_blocks(17), {"stages[6]": (2, 2, 2, 160), "avg_pool": (2, 1280)}),
    "ShuffleV1": (_blocks(16), {"stages[2]": (2, 4, 4, 960)}),
    "ShuffleV2": (_blocks(16), {"stages[2]": (2, 4, 4, 464), "avg_pool": (2, 1024)}),
}


@pytest.mark.parametrize("arch", sorted(FEATURES))
def test_feature_names_and_shapes(arch):
    names, shapes = FEATURES[arch]
    _, logits, features = _abstract(arch)
    assert {"stem", "avg_pool", "logits"} <= set(features)
    assert names <= set(features), f"missing features {sorted(names - set(features))}"
    for name, shape in shapes.items():
        assert features[name] == shape, name
    assert tuple(logits.shape) == features["logits"]
    if arch == "ResNet18":
        assert "blocks[8]" not in features


def _he_variables(abstract, seed=0):
    """Concrete variables without compiling `init` (XLA:CPU takes seconds per model for it)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("mean", "bias"):
            return np.zeros(leaf.shape, np.float32)
        if name in ("var", "scale"):
            return np.ones(leaf.shape, np.float32)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.mark.parametrize("arch,size,mode", [pytest.param("resnet8x4", 32, "grad", marks=pytest.mark.slow),
                                            pytest.param("PPLCNet_x0_25", 64, "train", marks=pytest.mark.slow),
                                            ("ShuffleV1", 32, "eval"), ("vgg8", 32, "eval")])
def test_forward_runs(arch, size, mode):
    """Real compute on tiny inputs: eval is deterministic; train mode updates BN stats (and a gradient is finite)."""
    model = get_model(arch, num_classes=7)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    variables = _he_variables(jax.eval_shape(lambda: model.init(jax.random.key(0), x)))
    eval_fn = jax.jit(lambda v, x: model.apply(v, x))
    out = eval_fn(variables, x)
    assert out.shape == (2, 7) and bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_array_equal(out, eval_fn(variables, x))
    if mode == "eval":
        return

    def loss(params):
        logits, updates = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                                      rngs={"dropout": jax.random.key(2)})
        return jnp.mean(logits ** 2), updates

    if mode == "grad":
        grads, updates = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    else:
        value, updates = jax.jit(loss)(variables["params"])
        assert bool(jnp.isfinite(value))
    before, after = jax.tree_util.tree_leaves(variables["batch_stats"]), jax.tree_util.tree_leaves(updates)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_pplcnet_dropout_needs_rng_only_in_training():
    model = get_model("PPLCNet_x0_25", num_classes=3)
    x = jnp.ones((1, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    jax.eval_shape(lambda v: model.apply(v, x), variables)  # eval: no rng needed
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)


def test_channel_shuffle_matches_nchw_definition():
    x = np.arange(2 * 3 * 4 * 12, dtype=np.float32).reshape(2, 12, 3, 4)  # NCHW
    n, c, h, w = x.shape
    ref = x.reshape(n, 3, c // 3, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    ours = channel_shuffle(jnp.asarray(x.transpose(0, 2, 3, 1)), 3)
    np.testing.assert_array_equal(np.asarray(ours).transpose(0, 3, 1, 2), ref)


def test_vd_avg_pool_excludes_padding():
    """Paddle AvgPool2D(2, 2, padding="SAME", ceil_mode=True): a 3x3 map pads one row/col at the end only."""
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    out = np.asarray(paddle_avg_pool_same(x, 2, 2))[0, :, :, 0]
    np.testing.assert_allclose(out, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])
