"""Your own data through the real CLI (issue 16), with Fashion-MNIST installed next to it: the data the config names
is what is trained on and evaluated, the run and the export record its identity, computed mean/std and labels,
`kdjax.infer` computes exactly the logits evaluation computes (fixed-size IDX images, variable-size JPEGs in list
files), `--from_dataset` works on every route (IDX, list files, prepared TFDS), and evaluating an export on other
data is refused or warned about.

Datasets (tests/own_data.py): mirror-pair glyphs (IDX, 20×20×1, a flip changes the class), variable-size colour
JPEGs (list files), 16-bit PNGs (list → prepare_data → TFDS)."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from conftest import REPO
from own_data import colour_images, glyph_images, student_config, write_idx, write_list

FASHION = "/usr/share/datasets/fashion-mnist"


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def train(tmp_path, name, *overrides):
    workdir = tmp_path / name
    proc = cli("kdjax.main", f"--config={student_config(tmp_path)}", f"--workdir={workdir}", *overrides)
    return workdir, proc


def eval_logits(spec, data_fields: dict, limit: int = 0):
    """Logits of the export's model on the test split through the evaluation pipeline (eval_batches), with the
    preprocessing the spec records: the reference kdjax.infer must equal."""
    from kdjax.config.defaults import base_config
    from kdjax.data.pipeline import eval_batches
    from kdjax.data.sources import open_source
    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import export_logits_fn

    data = ml_collections.ConfigDict(base_config().data.to_dict())
    data.update(data_fields)
    source, _ = open_source(data, "test", channels=int(spec["input_size"][-1]))
    logits_fn, _ = export_logits_fn(spec["_dir"])
    out = []
    for batch in eval_batches(source, global_batch=50, limit=limit):
        z = np.asarray(logits_fn(normalize(batch["image"], spec["mean"], spec["std"])))
        out.append(z[batch["mask"] > 0])
    return np.concatenate(out), source


def infer_logits(export_dir, files):
    from kdjax.serving.infer import predict

    return np.stack([r["logits"] for r in predict(str(export_dir), files, topk=1, return_logits=True)])


def load_spec(workdir):
    spec = json.load(open(workdir / "export" / "spec.json"))
    spec["_dir"] = str(workdir / "export")
    return spec


@pytest.fixture(scope="module")
def glyph_run(tmp_path_factory):
    """Mirror-pair glyphs as IDX files, trained (auto augmentation) with only data_dir and label_names_file named."""
    tmp = tmp_path_factory.mktemp("glyph_run")
    train_set, test_set = glyph_images(2000, 0), glyph_images(400, 1)
    data_dir = write_idx(tmp / "glyphs", train_set, test_set, names=list("bdpq()[]<>"))
    workdir, proc = train(tmp, "run", f"--config.data.data_dir={data_dir}", "--config.data.label_names_file=labels.txt",
                          "--config.train.epochs=3")
    return tmp, data_dir, workdir, proc, train_set


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="the point is that Fashion-MNIST is installed and not read")
def test_named_idx_data_is_what_is_trained_and_recorded(glyph_run):
    tmp, data_dir, workdir, proc, (train_images, _) = glyph_run
    pixels = train_images.astype(np.float64) / 255.0
    mean, std = round(pixels.mean(), 4), round(pixels.std(), 4)  # independent float64 computation
    assert f"data.mean/std not set: mean ({mean},) std ({std},) computed from every 2000 training images" in proc.stdout
    summary = json.load(open(workdir / "summary.json"))
    assert summary["dataset"]["route"] == "idx" and summary["dataset"]["location"] == data_dir
    assert summary["dataset"]["name"] == "glyphs" and summary["dataset"]["train"]["count"] == 2000
    assert summary["dataset"]["test"]["count"] == 400
    recorded = json.load(open(workdir / "config.json"))  # the run's identity: a content digest of each split
    assert recorded["built_from"]["data.train"]["count"] == 2000 and recorded["built_from"]["data.test"]["count"] == 400
    assert recorded["data_stats"]["mean"] == [mean] and recorded["data_stats"]["std"] == [std]
    spec = load_spec(workdir)
    assert spec["dataset"] == "glyphs" and spec["label_names"] == list("bdpq()[]<>")
    assert spec["mean"] == [mean] and spec["std"] == [std] and spec["input_size"] == [20, 20, 1]
    assert spec["preprocess"]["normalization"] == "computed" and spec["preprocess"]["crop_ratio"] == 1.0
    assert spec["data"]["reopen"] == {"source": "idx", "test_split": "test", "name": "glyphs", "data_dir": data_dir}
    # mirror pairs are learnt: the default augmentation for named data does not flip (a flip swaps b/d, p/q, ...)
    assert summary["eval"]["Student/top1"] > 0.9, summary["eval"]


def test_infer_equals_eval_and_from_dataset_on_idx(glyph_run):
    tmp, data_dir, workdir, _, _ = glyph_run
    spec = load_spec(workdir)
    proc = cli("kdjax.infer", f"--export_dir={workdir / 'export'}", "--from_dataset=12", "--topk=1")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    samples = sorted(os.listdir(workdir / "samples"))
    assert len(lines) == 12 and len(samples) == 12 and "warning" not in proc.stderr
    reference, source = eval_logits(spec, {"data_dir": data_dir}, limit=12)
    names = list("bdpq()[]<>")
    for i, name in enumerate(samples):  # the samples are our glyphs (true label in the name), not Fashion-MNIST
        label = int(source[i]["label"])
        assert name.startswith(f"{i:03d}_") and name.endswith(
            "".join(ch if ch.isalnum() else "_" for ch in names[label]) + ".png")
    files = [str(workdir / "samples" / n) for n in samples]
    np.testing.assert_allclose(infer_logits(workdir / "export", files), reference, rtol=1e-5, atol=1e-5)
    assert [r["class_ids"][0] for r in lines] == list(np.argmax(reference, -1))


def test_eval_of_the_export_reads_the_named_data_and_notices_other_data(glyph_run):
    tmp, data_dir, workdir, _, _ = glyph_run
    config, export = f"--config={student_config(tmp)}", f"--export_dir={workdir / 'export'}"
    ok = cli("kdjax.main", config, f"--workdir={tmp / 'e1'}", "--mode=eval", export,
             f"--config.data.data_dir={data_dir}", "--config.data.label_names_file=labels.txt")
    summary = json.load(open(workdir / "summary.json"))
    assert f"top-1 {100 * summary['eval']['Student/top1']:.2f}%" in ok.stdout and "warning" not in ok.stderr
    # nothing named: the default Fashion-MNIST would be read for a model of other data: refused, one line
    default = cli("kdjax.main", config, f"--workdir={tmp / 'e2'}", "--mode=eval", export, check=False)
    assert default.returncode == 2 and "Traceback" not in default.stderr
    assert "the export was trained on 'glyphs'" in default.stderr
    # a new test set of the same classes: evaluated, with a warning
    other = write_idx(tmp / "glyphs2", glyph_images(50, 7), glyph_images(60, 8), names=list("bdpq()[]<>"))
    new = cli("kdjax.main", config, f"--workdir={tmp / 'e3'}", "--mode=eval", export,
              f"--config.data.data_dir={other}", "--config.data.label_names_file=labels.txt")
    assert "on 60 test images" in new.stdout and "warning: evaluating on other test data" in new.stderr


def test_variable_size_jpeg_lists_infer_equals_eval(tmp_path):
    colours = colour_images(600, 0), colour_images(60, 1)
    root = write_list(tmp_path / "lists", {"train_list.txt": colours[0], "val_list.txt": colours[1]}, ext=".jpg",
                      sizes=((14, 30), (12, 26)))
    workdir, proc = train(tmp_path, "run", f"--config.data.root={root}", "--config.data.num_classes=10",
                          "--config.data.image_size=12")
    spec = load_spec(workdir)
    assert spec["input_size"] == [12, 12, 3] and spec["preprocess"]["crop_ratio"] == 0.875
    assert spec["data"]["route"] == "list" and spec["dataset"] == "lists"
    reference, source = eval_logits(spec, {"root": root, "num_classes": 10, "image_size": 12})
    files = [source.path(i) for i in range(len(source))]  # the list's own variable-size JPEGs
    np.testing.assert_allclose(infer_logits(workdir / "export", files), reference, rtol=1e-5, atol=1e-5)
    sample = cli("kdjax.infer", f"--export_dir={workdir / 'export'}", "--from_dataset=5", "--topk=1")
    assert len(sample.stdout.splitlines()) == 5  # the list route's test images, written and predicted


def test_16bit_png_lists_through_prepare_data_and_tfds(tmp_path):
    glyphs = glyph_images(600, 2), glyph_images(50, 3)
    root = write_list(tmp_path / "lists", {"train_list.txt": glyphs[0], "val_list.txt": glyphs[1]}, bits16=True)
    prep = cli("kdjax.tools.prepare_data", f"--root={root}", "--num_classes=10", f"--out_dir={tmp_path / 'tfds'}",
               "--name=glyph16", "--threads=1")
    assert "(20×20×1 images)" in prep.stdout and "image_size" not in prep.stdout
    workdir, proc = train(tmp_path, "run", f"--config.data.tfds_data_dir={tmp_path / 'tfds'}")
    spec = load_spec(workdir)
    pixels = glyphs[0][0].astype(np.float64) / 255.0  # 16-bit PNGs read at full precision: the 8-bit statistics
    assert spec["mean"] == [round(pixels.mean(), 4)] and spec["std"] == [round(pixels.std(), 4)]
    assert spec["data"]["route"] == "tfds" and spec["dataset"] == "glyph16" and spec["input_size"] == [20, 20, 1]
    sample = cli("kdjax.infer", f"--export_dir={workdir / 'export'}", "--from_dataset=4", "--topk=1")
    assert len(sample.stdout.splitlines()) == 4
    reference, _ = eval_logits(spec, {"tfds_data_dir": str(tmp_path / "tfds")}, limit=4)
    files = [str(workdir / "samples" / n) for n in sorted(os.listdir(workdir / "samples"))]
    np.testing.assert_allclose(infer_logits(workdir / "export", files), reference, rtol=1e-5, atol=1e-5)
