"""ViT / DeiT: parameter counts from the architecture, feature names and shapes, the forward pass against an independent
float64 numpy ViT written from the conversion rules of ../shared/weights/README.md ("timm ViT / DeiT"), and timm import
against the stored timm outputs.

Parameter counts are computed here from the architecture facts (timm's layer list: patch conv with bias, cls/dist
tokens, pos_embed over all tokens, per block 2 LayerNorms + qkv + proj + fc1 + fc2, final norm, one or two heads); they
equal timm's published 5.7M (ViT-Ti/16) and 5.9M (DeiT-Ti distilled) and the element count of the timm golden
checkpoint (5,910,800, ../shared/weights/timm/manifest.json).

Tests that need the timm golden files skip when they are absent: set KDJAX_WEIGHTS_DIR (default ../shared/weights)
to a folder with timm/manifest.json, timm/*.pth and timm/*_outputs.npz.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.errors import CheckpointError
from kdjax.models import get_model
from kdjax.models.features import collect
from kdjax.models.layers import count_params
from kdjax.weights import pretrained, timm

from conftest import REPO  # noqa: E402

WEIGHTS = os.environ.get("KDJAX_WEIGHTS_DIR", os.path.join(REPO, "..", "shared", "weights"))
TIMM_MANIFEST = os.path.join(WEIGHTS, "timm", "manifest.json")
needs_timm = pytest.mark.skipif(
    not os.path.isfile(TIMM_MANIFEST),
    reason=f"no timm golden files at {TIMM_MANIFEST}: set KDJAX_WEIGHTS_DIR to a folder with timm/manifest.json, "
           "timm/*.pth and timm/*_outputs.npz (the project's ../shared/weights)")
LOGIT_TOL, BLOCK_TOL = 1e-5, 2e-5  # max|Δ|/max|ref|, README "timm ViT / DeiT"

SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}


def vit_param_count(dim, depth=12, classes=1000, patch=16, in_chans=3, img=224, mlp_ratio=4, distilled=False):
    tokens = (img // patch) ** 2 + 1 + int(distilled)
    hidden = dim * mlp_ratio
    block = 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (dim * hidden + hidden) + (hidden * dim + dim)
    head = dim * classes + classes
    return (in_chans * patch * patch * dim + dim) + dim * (1 + int(distilled)) + tokens * dim + depth * block \
        + 2 * dim + head * (1 + int(distilled))


ARCHS = {f"vit_{s}_patch16_224": (s, False) for s in SIZES}
ARCHS.update({f"deit_{s}_distilled_patch16_224": (s, True) for s in SIZES})


def _variables(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_parameter_count(arch):
    size, distilled = ARCHS[arch]
    expected = vit_param_count(SIZES[size][0], distilled=distilled)
    assert count_params(_variables(get_model(arch), (1, 224, 224, 3))) == expected


def test_published_tiny_counts():
    assert vit_param_count(192) == 5_717_416  # timm vit_tiny_patch16_224, "5.7M"
    assert vit_param_count(192, distilled=True) == 5_910_800  # deit_tiny_distilled_patch16_224, "5.9M"
    if os.path.isfile(TIMM_MANIFEST):
        with open(TIMM_MANIFEST) as f:
            entry = json.load(f)["files"][0]
        assert entry["float_element_count"] == vit_param_count(192, distilled=True)


def test_features_recorded_per_block():
    model = get_model("deit_tiny_distilled_patch16_224")
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    v = _variables(model, x.shape)
    logits, mutated = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), v, x)
    shapes = {k: tuple(a.shape) for k, a in collect(mutated).items()}
    assert logits.shape == (2, 1000)
    for i in range(12):
        assert shapes[f"blocks[{i}]"] == (2, 198, 192)
    assert shapes["stem"] == shapes["final_norm"] == (2, 198, 192)
    assert shapes["avg_pool"] == (2, 192)
    assert shapes["logits_cls"] == shapes["logits_dist"] == shapes["logits"] == (2, 1000)


@pytest.mark.parametrize("patch", [4, 7])
def test_fashion_mnist_sized_vit_builds(patch):
    model = get_model("ViT", img_size=28, patch_size=patch, in_chans=1, num_classes=10, embed_dim=32, depth=2,
                      num_heads=2, distilled=True)
    x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    logits, mutated = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), v, x)
    tokens = (28 // patch) ** 2 + 2
    assert logits.shape == (3, 10) and collect(mutated)["blocks[1]"].shape == (3, tokens, 32)
    assert count_params(v) == vit_param_count(32, depth=2, classes=10, patch=patch, in_chans=1, img=28, distilled=True)


def test_wrong_input_size_is_a_config_error_naming_the_kwargs():
    from kdjax.config.defaults import base_config, model_entry
    from kdjax.errors import ConfigError
    from kdjax.models.distillation import DistillationModel, build_submodels

    c = base_config()
    c.models.Student = model_entry("deit_tiny_distilled_patch16_224")
    model = DistillationModel(build_submodels(c.models, 10))
    with pytest.raises(ConfigError, match="ViT built for 224x224x3 inputs.*set the model's kwargs img_size") as info:
        model.feature_names("Student", jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
    assert info.value.field == "models.Student.kwargs"


# ---- an independent float64 ViT, from a timm state dict ---------------------------------------------------------

_erf = np.vectorize(math.erf)


def _ln(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * w + b


def numpy_vit(sd, x_nchw, heads):
    """timm's forward in float64 from its state dict alone: (eval logits, class head, dist head or None, blocks)."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    w = sd["patch_embed.proj.weight"]
    d, c, p, _ = w.shape
    n, _, h, wd = x_nchw.shape
    patches = x_nchw.astype(np.float64).reshape(n, c, h // p, p, wd // p, p).transpose(0, 2, 4, 1, 3, 5)
    x = patches.reshape(n, -1, c * p * p) @ w.reshape(d, -1).T + sd["patch_embed.proj.bias"]
    prefix = [sd["cls_token"]] + ([sd["dist_token"]] if "dist_token" in sd else [])
    x = np.concatenate([np.broadcast_to(t, (n, 1, d)) for t in prefix] + [x], 1) + sd["pos_embed"]
    lin = lambda z, name: z @ sd[name + ".weight"].T + sd[name + ".bias"]  # noqa: E731
    blocks, i = [], 0
    while f"blocks.{i}.norm1.weight" in sd:
        b = f"blocks.{i}."
        y = _ln(x, sd[b + "norm1.weight"], sd[b + "norm1.bias"])
        t = y.shape[1]
        qkv = lin(y, b + "attn.qkv").reshape(n, t, 3, heads, d // heads).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = q @ k.transpose(0, 1, 3, 2) * (d // heads) ** -0.5
        a = np.exp(a - a.max(-1, keepdims=True))
        a = a / a.sum(-1, keepdims=True)
        x = x + lin((a @ v).transpose(0, 2, 1, 3).reshape(n, t, d), b + "attn.proj")
        y = lin(_ln(x, sd[b + "norm2.weight"], sd[b + "norm2.bias"]), b + "mlp.fc1")
        x = x + lin(0.5 * y * (1 + _erf(y / np.sqrt(2))), b + "mlp.fc2")
        blocks.append(x)
        i += 1
    x = _ln(x, sd["norm.weight"], sd["norm.bias"])
    cls = lin(x[:, 0], "head")
    if "dist_token" not in sd:
        return cls, cls, None, blocks
    dist = lin(x[:, 1], "head_dist")
    return (cls + dist) / 2, cls, dist, blocks


def random_timm_state(rng, dim=32, depth=2, heads=2, patch=4, img=16, chans=3, classes=7, distilled=True):
    """A timm-named state dict with every parameter non-trivial (LayerNorm weights far from 1, biases non-zero)."""
    tokens = (img // patch) ** 2 + 1 + int(distilled)
    r = lambda *s, scale=0.2: (rng.normal(size=s) * scale).astype(np.float32)  # noqa: E731
    sd = {"cls_token": r(1, 1, dim, scale=1.0), "pos_embed": r(1, tokens, dim, scale=0.5),
          "patch_embed.proj.weight": r(dim, chans, patch, patch), "patch_embed.proj.bias": r(dim)}
    if distilled:
        sd["dist_token"] = r(1, 1, dim, scale=1.0)
    for i in range(depth):
        b = f"blocks.{i}."
        for ln in ("norm1", "norm2"):
            sd[b + ln + ".weight"] = rng.uniform(0.5, 1.5, dim).astype(np.float32)
            sd[b + ln + ".bias"] = r(dim, scale=0.1)
        for name, (o, i_) in {"attn.qkv": (3 * dim, dim), "attn.proj": (dim, dim), "mlp.fc1": (4 * dim, dim),
                              "mlp.fc2": (dim, 4 * dim)}.items():
            sd[b + name + ".weight"] = r(o, i_, scale=i_ ** -0.5)
            sd[b + name + ".bias"] = r(o, scale=0.05)
    sd["norm.weight"] = rng.uniform(0.5, 1.5, dim).astype(np.float32)
    sd["norm.bias"] = r(dim, scale=0.1)
    for head in ("head", "head_dist") if distilled else ("head",):
        sd[head + ".weight"] = r(classes, dim, scale=dim ** -0.5)
        sd[head + ".bias"] = r(classes, scale=0.05)
    return sd


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _run(model, variables, x_nhwc, train=False):
    fn = jax.jit(lambda v, x: model.apply(v, x, train=train, mutable=["intermediates"]))
    with jax.default_matmul_precision("highest"):
        logits, mutated = fn(variables, jnp.asarray(x_nhwc))
    return np.asarray(logits), collect(mutated)


@pytest.mark.parametrize("distilled", [True, False])
def test_forward_matches_float64_numpy_vit(distilled):
    rng = np.random.default_rng(7)
    sd = random_timm_state(rng, distilled=distilled)
    variables, arch, kwargs = timm.import_timm(sd, "ViT", {"num_heads": 2}, "random state")
    assert (kwargs["depth"], kwargs["distilled"], kwargs["img_size"], kwargs["embed_dim"]) == (2, distilled, 16, 32)
    model = get_model(arch, **kwargs)
    x = rng.normal(size=(3, 3, 16, 16)).astype(np.float32)
    ref_logits, ref_cls, ref_dist, ref_blocks = numpy_vit(sd, x, heads=2)
    logits, feats = _run(model, variables, x.transpose(0, 2, 3, 1))
    assert _rel(logits, ref_logits) < 1e-5
    for i, ref in enumerate(ref_blocks):
        assert _rel(feats[f"blocks[{i}]"], ref) < 2e-5
    if distilled:
        assert _rel(feats["logits_cls"], ref_cls) < 1e-5 and _rel(feats["logits_dist"], ref_dist) < 1e-5
        # training mode returns the class head (what the DeiT loss's base CE reads); eval the average of both
        train_logits, train_feats = _run(model, variables, x.transpose(0, 2, 3, 1), train=True)
        assert _rel(train_logits, ref_cls) < 1e-5 and _rel(train_feats["logits_dist"], ref_dist) < 1e-5
        np.testing.assert_allclose(logits, (feats["logits_cls"] + feats["logits_dist"]) / 2, rtol=1e-6, atol=1e-6)


def test_mistakes_the_numpy_reference_would_catch():
    """The float64 reference is sensitive to what the README lists (eps, token order)."""
    rng = np.random.default_rng(3)
    sd = random_timm_state(rng)
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    base = numpy_vit(sd, x, heads=2)[0]
    swapped = dict(sd, cls_token=sd["dist_token"], dist_token=sd["cls_token"])
    assert _rel(numpy_vit(swapped, x, heads=2)[0], base) > 1e-3
    variables, arch, kwargs = timm.import_timm(sd, "ViT", {"num_heads": 2}, "random state")
    model = get_model(arch, **kwargs)
    assert _rel(_run(model, variables, x.transpose(0, 2, 3, 1))[0], base) < 1e-5
    model_wrong_heads = get_model(arch, **dict(kwargs, num_heads=4))
    assert _rel(_run(model_wrong_heads, variables, x.transpose(0, 2, 3, 1))[0], base) > 1e-3


def test_structure_comes_from_the_checkpoint():
    rng = np.random.default_rng(11)
    sd = random_timm_state(rng, dim=64, depth=3, heads=1, patch=7, img=28, chans=1, classes=10, distilled=False)
    facts = timm.checkpoint_facts(sd)
    assert facts == dict(embed_dim=64, depth=3, distilled=False, patch_size=7, in_chans=1, img_size=28,
                         num_classes=10, mlp_ratio=4.0)
    variables, arch, kwargs = timm.import_timm(sd, "ViT", {}, "random state")
    assert kwargs["num_heads"] == 1  # embed_dim / 64
    x = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    logits, _ = _run(get_model(arch, **kwargs), variables, x.transpose(0, 2, 3, 1))
    assert _rel(logits, numpy_vit(sd, x, heads=1)[0]) < 1e-5


def test_named_arch_must_fit_the_checkpoint():
    sd = random_timm_state(np.random.default_rng(0), dim=192, depth=1, heads=3, patch=16, img=32)
    with pytest.raises(CheckpointError, match="depth=1.*deit_tiny_distilled_patch16_224 has.*depth=12"):
        timm.import_timm(sd, "deit_tiny_distilled_patch16_224", {}, "ckpt")
    with pytest.raises(CheckpointError, match="img_size=32 but the model is configured with img_size=224"):
        timm.import_timm(sd, "ViT", {"img_size": 224}, "ckpt")
    no_dist_head = {k: v for k, v in sd.items() if not k.startswith("head_dist")}
    with pytest.raises(CheckpointError, match="dist_token but no head_dist"):
        timm.checkpoint_facts(no_dist_head)


# ---- the timm golden checkpoints ---------------------------------------------------------------------------------

def _timm_entries():
    if not os.path.isfile(TIMM_MANIFEST):
        return []
    with open(TIMM_MANIFEST) as f:
        return json.load(f)["files"]


def _check_against_reference(entry, arch, variables, kwargs):
    x = np.load(os.path.join(WEIGHTS, entry["input"])).transpose(0, 2, 3, 1)
    ref = np.load(os.path.join(WEIGHTS, entry["outputs_file"]))
    model = get_model(arch, **kwargs)
    logits, feats = _run(model, variables, x)
    errors = {"logits": _rel(logits, ref["logits"])}
    for name in ref.files:
        if name.startswith("blocks[") or name in ("logits_cls", "logits_dist"):
            errors[name] = _rel(feats[name], ref[name])
    bad = {k: v for k, v in errors.items() if v > (BLOCK_TOL if k.startswith("blocks") else LOGIT_TOL)}
    assert not bad, f"{entry['checkpoint']}: {bad}"
    return errors


@needs_timm
@pytest.mark.parametrize("entry", _timm_entries(), ids=lambda e: e["checkpoint"])
def test_timm_checkpoint_reproduces_reference_outputs(entry):
    path = os.path.join(WEIGHTS, entry["checkpoint"])
    # the .pth is read as any PyTorch file; its timm structure is recognised from the keys
    variables, arch, kwargs = pretrained.import_pretrained(path, entry["arch"], "torchvision")
    assert len(jax.tree_util.tree_leaves(variables)) == entry["state_dict_key_count"]
    facts = entry.get("architecture_facts", {})
    if facts:
        assert get_model(arch, **kwargs).num_tokens == facts["tokens"]
    errors = _check_against_reference(entry, arch, variables, kwargs)
    if "blocks_stored" in entry:
        assert {k for k in errors if k.startswith("blocks")} == set(entry["blocks_stored"])


@needs_timm
def test_convert_cli_from_timm(tmp_path, capsys):
    from kdjax.tools import convert
    from kdjax.weights.export_dir import build_from_spec, load_export

    entry = _timm_entries()[0]
    out = tmp_path / "teacher"
    rc = convert.main(["--from", "timm", "--arch", entry["arch"], os.path.join(WEIGHTS, entry["checkpoint"]),
                       "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    variables, spec = load_export(str(out))
    assert spec["arch"] == entry["arch"] and spec["input_size"] == [224, 224, 3]
    assert spec["source"]["framework"] == "timm"
    model = build_from_spec(spec)
    x = np.load(os.path.join(WEIGHTS, entry["input"])).transpose(0, 2, 3, 1)
    with jax.default_matmul_precision("highest"):
        logits = model.apply(variables, x, train=False)
    assert _rel(logits, np.load(os.path.join(WEIGHTS, entry["outputs_file"]))["logits"]) <= LOGIT_TOL


@needs_timm
def test_a_timm_pth_serves_as_init(tmp_path):
    """`models.Teacher.init` naming a timm .pth: read, structure checked, variables fit the configured model."""
    from kdjax.config.defaults import base_config, model_entry
    from kdjax.models.distillation import DistillationModel, build_submodels
    from kdjax.weights.init import check_variables_match, load_init

    entry = _timm_entries()[0]
    path = os.path.join(WEIGHTS, entry["checkpoint"])
    c = base_config()
    c.models.Teacher = model_entry(entry["arch"], frozen=True, init=path)
    subs = build_submodels(c.models, 1000)
    variables = load_init("Teacher", subs["Teacher"], str(tmp_path))
    shapes = jax.eval_shape(DistillationModel(subs).init_variables, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    check_variables_match("Teacher", shapes["Teacher"], variables, path)
    c.models.Teacher.kwargs = {"num_classes": 10, "img_size": 28, "patch_size": 7, "in_chans": 1}
    with pytest.raises(CheckpointError, match="img_size=224 but the model is configured with img_size=28"):
        load_init("Teacher", build_submodels(c.models, 10)["Teacher"], str(tmp_path / "other"))


def test_non_square_grid_needs_and_takes_img_size():
    rng = np.random.default_rng(4)
    sd = random_timm_state(rng, dim=32, depth=1, heads=2, patch=4, img=16, distilled=False)
    sd["pos_embed"] = sd["pos_embed"][:, :1 + 8]  # 8 patches: a 2x4 grid, e.g. 8x16 images
    with pytest.raises(CheckpointError, match=r"not a square grid; give img_size=\(H, W\)"):
        timm.checkpoint_facts(sd)
    variables, arch, kwargs = timm.import_timm(sd, "ViT", {"img_size": (8, 16), "num_heads": 2}, "ckpt")
    x = rng.normal(size=(2, 3, 8, 16)).astype(np.float32)
    logits, _ = _run(get_model(arch, **kwargs), variables, x.transpose(0, 2, 3, 1))
    assert _rel(logits, numpy_vit(sd, x, heads=2)[0]) < 1e-5
