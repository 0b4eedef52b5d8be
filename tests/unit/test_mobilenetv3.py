"""MobileNetV3 (PaddleClas `ppcls/arch/backbone/legendary_models/mobilenet_v3.py`, read at commit
d178931fca432204e6b7422bac4f92e09ff22fa4 of PaddlePaddle/PaddleClas, 2024-10-18): parameter counts, `.pdparams`
import by round trip, and the forward pass against a float64 numpy MobileNetV3 written here from that file.

No MobileNetV3 weights are in ../shared/weights, so the import is checked with a fake PaddleClas state dict whose
names and shapes are derived below from that file's constructor (ConvBNLayer = `<x>.conv.weight` +
`<x>.bn.{weight,bias,_mean,_variance}`; ResidualUnit = expand_conv, bottleneck_conv (groups = mid), mid_se.conv1/conv2
(with bias, channel // 4), linear_conv; MobileNetV3 = conv, blocks.<i>, last_second_conv, last_conv (no bias),
fc ([in, out] in Paddle)), saved in the .pdparams format (a pickle of name -> ndarray plus
'StructuredToParameterName@@'), imported, and run.

Published counts: PaddleClas docs/zh_CN/models/ImageNet1k/MobileNetV3.md, "Params(M)" with two decimals. The exact
counts below are computed from the architecture; every published figure is within 0.011M of them (large_x1_0 is
listed as 5.47M; the layers above give 5,480,206, torchvision's differently-built mobilenet_v3_large has 5,483,032).
"""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from kdjax.models import get_model
from kdjax.models.features import collect
from kdjax.models.layers import count_params
from kdjax.weights import pretrained

# PaddleClas NET_CONFIG: k, exp, c, se, act, s
LARGE = [(3, 16, 16, 0, "relu", 1), (3, 64, 24, 0, "relu", 2), (3, 72, 24, 0, "relu", 1), (5, 72, 40, 1, "relu", 2),
         (5, 120, 40, 1, "relu", 1), (5, 120, 40, 1, "relu", 1), (3, 240, 80, 0, "hs", 2), (3, 200, 80, 0, "hs", 1),
         (3, 184, 80, 0, "hs", 1), (3, 184, 80, 0, "hs", 1), (3, 480, 112, 1, "hs", 1), (3, 672, 112, 1, "hs", 1),
         (5, 672, 160, 1, "hs", 2), (5, 960, 160, 1, "hs", 1), (5, 960, 160, 1, "hs", 1)]
SMALL = [(3, 16, 16, 1, "relu", 2), (3, 72, 24, 0, "relu", 2), (3, 88, 24, 0, "relu", 1), (5, 96, 40, 1, "hs", 2),
         (5, 240, 40, 1, "hs", 1), (5, 240, 40, 1, "hs", 1), (5, 120, 48, 1, "hs", 1), (5, 144, 48, 1, "hs", 1),
         (5, 288, 96, 1, "hs", 2), (5, 576, 96, 1, "hs", 1), (5, 576, 96, 1, "hs", 1)]
CFG = {"large": (LARGE, 960), "small": (SMALL, 576)}
PUBLISHED_M = {"large_x1_25": 7.44, "large_x1_0": 5.47, "large_x0_75": 3.91, "large_x0_5": 2.67, "large_x0_35": 2.10,
               "small_x1_25": 3.62, "small_x1_0": 2.94, "small_x0_75": 2.37, "small_x0_5": 1.90, "small_x0_35": 1.66}
SCALE = {"x1_25": 1.25, "x1_0": 1.0, "x0_75": 0.75, "x0_5": 0.5, "x0_35": 0.35}


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def paddle_shapes(config, scale, classes=1000):
    """name -> shape of a PaddleClas MobileNetV3 state dict, in its constructor's order."""
    cfg, squeeze = CFG[config]
    out = {}

    def convbn(prefix, cin, cout, k, groups=1):
        out[f"{prefix}.conv.weight"] = (cout, cin // groups, k, k)
        for leaf in ("weight", "bias", "_mean", "_variance"):
            out[f"{prefix}.bn.{leaf}"] = (cout,)

    stem = make_divisible(16 * scale)
    convbn("conv", 3, stem, 3)
    for i, (k, exp, c, se, _, _) in enumerate(cfg):
        cin = stem if i == 0 else make_divisible(cfg[i - 1][2] * scale)
        mid, cout = make_divisible(scale * exp), make_divisible(scale * c)
        convbn(f"blocks.{i}.expand_conv", cin, mid, 1)
        convbn(f"blocks.{i}.bottleneck_conv", mid, mid, k, groups=mid)
        if se:
            out[f"blocks.{i}.mid_se.conv1.weight"] = (mid // 4, mid, 1, 1)
            out[f"blocks.{i}.mid_se.conv1.bias"] = (mid // 4,)
            out[f"blocks.{i}.mid_se.conv2.weight"] = (mid, mid // 4, 1, 1)
            out[f"blocks.{i}.mid_se.conv2.bias"] = (mid,)
        convbn(f"blocks.{i}.linear_conv", mid, cout, 1)
    sq = make_divisible(scale * squeeze)
    convbn("last_second_conv", make_divisible(cfg[-1][2] * scale), sq, 1)
    out["last_conv.weight"] = (1280, sq, 1, 1)
    out["fc.weight"] = (1280, classes)
    out["fc.bias"] = (classes,)
    return out


def trainable_count(shapes):
    return sum(int(np.prod(s)) for n, s in shapes.items() if not n.endswith(("_mean", "_variance")))


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_parameter_count(name):
    config, suffix = name.split("_", 1)
    model = get_model(f"MobileNetV3_{name}")
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    exact = trainable_count(paddle_shapes(config, SCALE[suffix]))
    assert count_params(variables) == exact
    assert abs(exact / 1e6 - PUBLISHED_M[name]) <= 0.011
    assert model.num_classes == 1000


def test_feature_names_and_shapes():
    model = get_model("MobileNetV3_large_x1_0")
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape)))
    _, mutated = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), v, x)
    shapes = {k: tuple(a.shape) for k, a in collect(mutated).items()}
    assert shapes["stem"] == (2, 112, 112, 16)
    assert shapes["blocks[0]"] == (2, 112, 112, 16) and shapes["blocks[14]"] == (2, 7, 7, 160)
    assert [shapes[f"stages[{j}]"] for j in range(5)] == [shapes[f"blocks[{i}]"] for i in (0, 2, 5, 11, 14)]
    assert shapes["avg_pool"] == (2, 1280) and shapes["logits"] == (2, 1000)
    small = get_model("MobileNetV3_small_x1_0")
    v = jax.eval_shape(lambda: small.init(jax.random.key(0), jnp.zeros(x.shape)))
    _, mutated = jax.eval_shape(lambda v, x: small.apply(v, x, mutable=["intermediates"]), v, x)
    names = set(collect(mutated))
    assert {f"blocks[{i}]" for i in range(11)} | {f"stages[{j}]" for j in range(4)} <= names


def fake_state(config, scale, classes, rng):
    """Random values with non-trivial BN statistics and biases, scaled so activations stay O(1)."""
    state = {}
    for name, shape in paddle_shapes(config, scale, classes).items():
        if name.endswith("bn.weight"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("_mean", "bias")):
            value = rng.normal(0, 0.1, shape)
        elif name == "fc.weight":
            value = rng.normal(0, shape[0] ** -0.5, shape)
        else:
            value = rng.normal(0, np.prod(shape[1:]) ** -0.5, shape)
        state[name] = value.astype(np.float32)
    return state


def _write_pdparams(path, state):
    with open(path, "wb") as f:
        pickle.dump(dict(state, **{"StructuredToParameterName@@": {k: f"param_{i}" for i, k in enumerate(state)}}), f,
                    protocol=4)


def test_pdparams_round_trip_fills_every_leaf(tmp_path):
    state = fake_state("large", 1.0, 1000, np.random.default_rng(0))
    path = tmp_path / "MobileNetV3_large_x1_0_pretrained.pdparams"
    _write_pdparams(path, state)
    variables = pretrained.load_pretrained(str(path), "MobileNetV3_large_x1_0")
    leaves = jax.tree_util.tree_leaves(variables)
    assert len(leaves) == len(state)  # every tensor used, every model variable filled (or a CheckpointError)
    p, bs = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(p["conv"]["conv"]["kernel"], state["conv.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["blocks_3"]["bottleneck_conv"]["conv"]["kernel"],
                                  state["blocks.3.bottleneck_conv.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["blocks_3"]["mid_se"]["conv1"]["bias"], state["blocks.3.mid_se.conv1.bias"])
    np.testing.assert_array_equal(bs["blocks_14"]["linear_conv"]["bn"]["var"],
                                  state["blocks.14.linear_conv.bn._variance"])
    np.testing.assert_array_equal(p["last_conv"]["kernel"], state["last_conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["fc"]["kernel"], state["fc.weight"])  # Paddle Linear is already [in, out]


def test_wrong_scale_is_refused(tmp_path):
    path = tmp_path / "mv3.pdparams"
    _write_pdparams(path, fake_state("small", 0.5, 10, np.random.default_rng(1)))
    with pytest.raises(Exception, match="does not fit arch 'MobileNetV3_small_x1_0'"):
        pretrained.load_pretrained(str(path), "MobileNetV3_small_x1_0")


# ---- float64 numpy MobileNetV3 from the Paddle state dict ---------------------------------------------------------

def np_conv(x, w, stride=1, groups=1, bias=None):
    """Paddle Conv2D, NCHW / OIHW, padding (k-1)//2."""
    k = w.shape[-1]
    p = (k - 1) // 2
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    y = np.einsum("nchwij,cij->nchw", win, w[:, 0]) if groups > 1 else np.einsum("nchwij,ocij->nohw", win, w)
    return y if bias is None else y + bias[None, :, None, None]


def np_hardswish(x):
    return x * np.clip(x + 3, 0, 6) / 6


def np_mv3(sd, x, config, scale):
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    cfg, _ = CFG[config]

    def convbn(prefix, x, stride=1, groups=1, act=None):
        y = np_conv(x, sd[f"{prefix}.conv.weight"], stride, groups)
        g = lambda leaf: sd[f"{prefix}.bn.{leaf}"][None, :, None, None]  # noqa: E731
        y = (y - g("_mean")) / np.sqrt(g("_variance") + 1e-5) * g("weight") + g("bias")
        return {"relu": lambda z: np.maximum(z, 0), "hs": np_hardswish, None: lambda z: z}[act](y)

    x = convbn("conv", x.astype(np.float64), 2, act="hs")
    blocks = []
    for i, (k, exp, c, se, act, s) in enumerate(cfg):
        b = f"blocks.{i}"
        y = convbn(f"{b}.expand_conv", x, act=act)
        y = convbn(f"{b}.bottleneck_conv", y, s, groups=y.shape[1], act=act)
        if se:
            z = y.mean((2, 3), keepdims=True)
            z = np.maximum(np_conv(z, sd[f"{b}.mid_se.conv1.weight"], bias=sd[f"{b}.mid_se.conv1.bias"]), 0)
            z = np_conv(z, sd[f"{b}.mid_se.conv2.weight"], bias=sd[f"{b}.mid_se.conv2.bias"])
            y = y * np.clip(0.2 * z + 0.5, 0, 1)
        y = convbn(f"{b}.linear_conv", y)
        x = x + y if s == 1 and x.shape[1] == y.shape[1] else y
        blocks.append(x)
    x = convbn("last_second_conv", x, act="hs").mean((2, 3), keepdims=True)
    x = np_hardswish(np_conv(x, sd["last_conv.weight"])) * 0.8  # Dropout(0.2, downscale_in_infer) at inference
    return x[:, :, 0, 0] @ sd["fc.weight"] + sd["fc.bias"], blocks


@pytest.mark.parametrize("config", ["small", "large"])
def test_forward_matches_float64_numpy(tmp_path, config):
    rng = np.random.default_rng(5)
    state = fake_state(config, 0.35, 10, rng)
    path = tmp_path / "mv3.pdparams"
    _write_pdparams(path, state)
    arch = f"MobileNetV3_{config}_x0_35"
    variables = pretrained.load_pretrained(str(path), arch)
    x = rng.normal(size=(2, 3, 64, 64)).astype(np.float32)
    model = get_model(arch, num_classes=10)
    logits, mutated = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, x.transpose(0, 2, 3, 1))
    ref_logits, ref_blocks = np_mv3(state, x, config, 0.35)
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))  # noqa: E731
    assert rel(logits, ref_logits) < 1e-4
    feats = collect(mutated)
    for i, ref in enumerate(ref_blocks):
        assert rel(np.asarray(feats[f"blocks[{i}]"]).transpose(0, 3, 1, 2), ref) < 1e-4, i
