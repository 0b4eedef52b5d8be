"""Pretrained-teacher import: every checkpoint of the weights manifest must reproduce its framework's outputs.

Everything (arch, framework, which features were stored) comes from `manifest.json`, so other checkpoint
sets (other seeds, other ResNet variants) run through the same tests. KDJAX_WEIGHTS_DIR overrides the
default `<repo>/../shared/weights`.
"""

import importlib.util
import json
import os
import pickle
import re
from functools import lru_cache

import jax
import numpy as np
import pytest

from kdjax.tools import convert
from kdjax.weights import pretrained
from kdjax.errors import CheckpointError
from kdjax.weights.export_dir import build_from_spec, load_export
from kdjax.models import get_model
from kdjax.models.features import collect

from conftest import REPO  # noqa: E402
WEIGHTS = os.environ.get("KDJAX_WEIGHTS_DIR", os.path.join(REPO, "..", "shared", "weights"))
MANIFEST = os.path.join(WEIGHTS, "manifest.json")
TOLERANCE = 1e-4  # max|diff| / max|ref|

needs_weights = pytest.mark.skipif(
    not os.path.isfile(MANIFEST),
    reason=f"no weights manifest at {MANIFEST}: these tests need the converter golden files (~140 MB of PaddleClas "
           f".pdparams, torchvision .pth and timm checkpoints with their frameworks' outputs), kept outside the "
           f"repository in the project's shared/weights folder beside the checkout; set KDJAX_WEIGHTS_DIR to a copy")


def _manifest():
    if not os.path.isfile(MANIFEST):
        return {"files": []}
    with open(MANIFEST) as f:
        return json.load(f)


def _source(entry):
    framework = entry.get("framework", "").lower()
    if framework.startswith("paddle"):
        return "paddle"
    if "torch" in framework:
        return "torchvision"
    return pretrained.detect_source(entry["checkpoint"])


def _compared_outputs(entry):
    """Stored float32 outputs: logits and features (float64 reruns are for information only)."""
    return [name for name, meta in entry["outputs"].items() if meta.get("dtype", "float32") == "float32"]


@lru_cache(maxsize=None)
def _apply_fn(arch, num_classes):
    """One jitted forward per (arch, classes), reused by the manifest and CLI tests."""
    model = get_model(arch, num_classes=num_classes)

    def forward(variables, x):
        with jax.default_matmul_precision("highest"):  # GPUs would use TF32 for float32 (~1e-3 off)
            return model.apply(variables, x, train=False, mutable=["intermediates"])

    return jax.jit(forward)


@lru_cache(maxsize=None)
def _input(rel_path):
    return np.load(os.path.join(WEIGHTS, rel_path)).transpose(0, 2, 3, 1)  # NCHW -> NHWC


def _max_rel(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def _check_outputs(entry, arch, variables, num_classes):
    logits, mutated = _apply_fn(arch, num_classes)(variables, _input(entry["input"]))
    features = collect(mutated)
    ref = np.load(os.path.join(WEIGHTS, entry["outputs_file"]))
    errors = {}
    for name in _compared_outputs(entry):
        assert name == "logits" or name in features, f"{arch} does not record feature {name!r}"
        ours = np.asarray(logits if name == "logits" else features[name], np.float32)
        if ours.ndim == 4:
            ours = ours.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        assert ours.shape == ref[name].shape, (name, ours.shape, ref[name].shape)
        errors[name] = _max_rel(ours, ref[name])
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, f"{entry['checkpoint']}: outputs off by more than {TOLERANCE}: {bad} (all: {errors})"


@needs_weights
@pytest.mark.parametrize("entry", _manifest()["files"], ids=lambda e: e["checkpoint"])
def test_checkpoint_reproduces_reference_outputs(entry):
    source = _source(entry)
    path = os.path.join(WEIGHTS, entry["checkpoint"])
    variables, arch, kwargs = pretrained.import_pretrained(path, entry["arch"], source)
    if "keys_file" in entry:  # the reader saw every tensor of the file (torch's step counters excepted)
        with open(os.path.join(WEIGHTS, entry["keys_file"])) as f:
            keys = [k for k in json.load(f) if not k.endswith("num_batches_tracked")]
        assert len(jax.tree_util.tree_leaves(variables)) == len(keys)
    _check_outputs(entry, arch, variables, kwargs["num_classes"])


def _first_entry(source):
    entries = [e for e in _manifest()["files"] if _source(e) == source]
    if not entries:
        pytest.skip(f"manifest has no {source} checkpoint")
    return entries[0]


@needs_weights
def test_cli_export_round_trip(tmp_path, capsys):
    entry = _first_entry("paddle")
    out = tmp_path / "teacher"
    rc = convert.main(["--from", "paddle", "--arch", entry["arch"], os.path.join(WEIGHTS, entry["checkpoint"]),
                       "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    variables, spec = load_export(str(out))
    assert spec["arch"] == entry["arch"] and spec["input_size"] == [224, 224, 3]
    assert spec["mean"] == pytest.approx([0.485, 0.456, 0.406]) and spec["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert spec["num_classes"] == entry["outputs"]["logits"]["shape"][-1]
    model = build_from_spec(spec)
    assert (model.num_classes, type(model)) == (spec["num_classes"], type(get_model(spec["arch"])))
    _check_outputs(entry, spec["arch"], variables, spec["num_classes"])


@needs_weights
def test_torchvision_names_resolve_to_tv_archs():
    entry = _first_entry("torchvision")
    _, arch, _ = pretrained.import_pretrained(os.path.join(WEIGHTS, entry["checkpoint"]), entry["arch"],
                                              "torchvision")
    assert arch == pretrained.resolve_arch(entry["arch"], "torchvision")
    assert arch.startswith("tv_") or arch == entry["arch"]


@needs_weights
def test_wrong_arch_lists_missing_and_unexpected():
    paddle_resnet = [e for e in _manifest()["files"] if _source(e) == "paddle" and e["arch"] == "ResNet18"]
    if not paddle_resnet:
        pytest.skip("no PaddleClas ResNet18 in the manifest")
    path = os.path.join(WEIGHTS, paddle_resnet[0]["checkpoint"])
    with pytest.raises(CheckpointError) as info:
        pretrained.load_pretrained(path, "PPLCNet_x1_0")
    msg = str(info.value)
    assert "'PPLCNet_x1_0'" in msg
    assert "unexpected in the checkpoint" in msg and "blocks.0.conv0.conv.weight [64,64,3,3]" in msg
    assert "missing from the checkpoint" in msg and "params/blocks2_0/dw_conv/conv/kernel [3,3,1,16]" in msg

    # torchvision's ResNet18 lacks PaddleClas' first-block projection: named precisely
    with pytest.raises(CheckpointError) as info:
        pretrained.load_pretrained(path, "tv_resnet18", source="paddle")
    assert "blocks.0.short.conv.weight [64,64,1,1]" in str(info.value)

    # and the other way round: a torchvision file imported as a PaddleClas ResNet18
    tv = [e for e in _manifest()["files"] if _source(e) == "torchvision" and e["arch"] == "resnet18"]
    if tv:
        with pytest.raises(CheckpointError, match=r"missing from the checkpoint.*\n.*params/blocks_0/short/"):
            pretrained.load_pretrained(os.path.join(WEIGHTS, tv[0]["checkpoint"]), "ResNet18", source="torchvision")

    # a wrong class count is a shape mismatch on the classifier
    with pytest.raises(CheckpointError, match=r"fc\.weight \[512,1000\] -> params/fc/kernel \[512,10\]"):
        pretrained.load_pretrained(path, "ResNet18", num_classes=10)


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    missing = str(tmp_path / "nope.pdparams")
    with pytest.raises(CheckpointError, match="does not exist"):
        pretrained.load_pretrained(missing, "ResNet18")
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["--from", "paddle", "--arch", "ResNet18", missing, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "does not exist" in err and not (tmp_path / "out").exists()


def test_unknown_arch_and_garbage_file(tmp_path):
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot read"):
        pretrained.read_state_dict(str(bad))
    good = tmp_path / "w.pdparams"
    with open(good, "wb") as f:
        pickle.dump({"fc.weight": np.zeros((2, 3), np.float32)}, f)
    with pytest.raises(CheckpointError, match="unknown arch 'ResNet9'"):
        pretrained.load_pretrained(str(good), "ResNet9")


def test_pdparams_written_by_numpy1_is_readable(tmp_path):
    """numpy 1.x pickles refer to numpy.core.multiarray; protocol 2 spells module names out, so rewrite them."""
    state = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.ones(3, np.float32),
             "StructuredToParameterName@@": {"fc.weight": "linear_0.w_0"}}
    raw = pickle.dumps(state, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    path = tmp_path / "old.pdparams"
    path.write_bytes(raw)
    loaded = pretrained.read_state_dict(str(path))
    assert set(loaded) == {"fc.weight", "fc.bias"}
    np.testing.assert_array_equal(loaded["fc.weight"], state["fc.weight"])


def test_pdparams_reader_refuses_code(tmp_path):
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"x": os.getcwd}))
    with pytest.raises(CheckpointError, match="refusing"):
        pretrained.read_state_dict(str(path))


def test_legacy_pth_without_torch_says_how(tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch installed: legacy files are read through it")
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="needs torch"):
        pretrained.read_state_dict(str(path))


def _torch_style_state_dict(variables):
    """Inverse of the import rules: Flax tree -> PyTorch-named, PyTorch-laid-out numpy state dict."""
    leaf_names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    state = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
            keys = [p.key for p in path]
            module = ".".join(re.sub(r"_(\d+)", r".\1", k) for k in keys[:-1])
            value = np.asarray(leaf)
            if keys[-1] == "kernel":
                value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
            state[f"{module}.{leaf_names[keys[-1]]}"] = value
    return state


@pytest.mark.parametrize("arch", ["resnet8x4", "wrn_16_2", "vgg8", "ShuffleV1", "ShuffleV2", "MobileNetV2_cifar",
                                  "MobileNetV2"])
def test_pytorch_named_state_dicts_map_onto_the_zoo(arch):
    """CIFAR-zoo modules carry the RepDistiller attribute names, so their .pth files import mechanically."""
    model = get_model(arch, num_classes=5)
    abstract = pretrained.abstract_variables(model)
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map(lambda a: rng.standard_normal(a.shape).astype(np.float32), abstract)
    state = _torch_style_state_dict(variables)
    assert any(k.endswith("running_var") for k in state) and "num_batches_tracked" not in state
    loaded = pretrained.map_state_dict(state, arch, "torchvision", abstract)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, jax.tree_util.tree_map(np.asarray, variables))


def test_dataparallel_prefix_and_nesting_are_unwrapped(tmp_path):
    path = tmp_path / "wrapped.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"model": {"module.fc.weight": np.ones((2, 3), np.float32)}, "epoch": 3}, f)
    assert list(pretrained.read_state_dict(str(path))) == ["fc.weight"]
