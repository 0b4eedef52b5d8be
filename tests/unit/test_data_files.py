"""File-backed sources: PaddleClas list files (JPEG + PNG), SSLD mixing, TFDS ArrayRecord written by
kdjax.tools.prepare_data and read back through tfds.data_source, and every bad-data case.

Fixtures are generated once per session: solid-colour images whose red value is 5 + 3·id, so a batch says which
images it holds even after resizing (resizing a constant image keeps it constant).
"""

import gzip
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from kdjax.config.defaults import base_config
from kdjax.data.decode import BadImage
from kdjax.data.pipeline import eval_batches, train_pipeline
from kdjax.data.sources import open_source
from kdjax.errors import ConfigError, DataError
from kdjax.tools.prepare_data import prepare_idx, prepare_lists

N_TRAIN, N_VAL, N_UNLABELED, CLASSES = 32, 12, 24, 5
from conftest import REPO  # noqa: E402


def ident(images) -> np.ndarray:
    """Image ids of a uint8 NHWC batch, from the red channel (JPEG may be off by one or two)."""
    red = np.asarray(images)[..., 0].reshape(len(images), -1).mean(1)
    return np.rint((red - 5) / 3).astype(int)


def _write_image(path, ident_value, size, gray=False):
    value = 5 + 3 * ident_value
    if gray:
        Image.fromarray(np.full(size[::-1], value, np.uint8), "L").save(path)
    else:
        Image.fromarray(np.full(size[::-1] + (3,), (value, 100, 200), np.uint8)).save(path, quality=95)


@pytest.fixture(scope="session")
def lists(tmp_path_factory):
    """root/ with train (ids 0..31), val (32..43) and unlabeled (44..67) images, their lists and label names."""
    root = tmp_path_factory.mktemp("lists")
    rng = np.random.default_rng(0)
    spans = {"train_list.txt": range(0, N_TRAIN), "val_list.txt": range(N_TRAIN, N_TRAIN + N_VAL),
             "train_list_unlabel.txt": range(N_TRAIN + N_VAL, N_TRAIN + N_VAL + N_UNLABELED)}
    for list_name, ids in spans.items():
        sub = list_name.split("_")[0] + ("_unlabel" if "unlabel" in list_name else "")
        os.makedirs(root / sub / "n01", exist_ok=True)
        lines = []
        for i in ids:
            ext = ".png" if i % 3 == 0 else ".JPEG"
            rel = f"{sub}/n01/img_{i:03d}{ext}"
            size = (int(rng.integers(24, 64)), int(rng.integers(20, 48)))
            _write_image(root / rel, i, size, gray=(i % 7 == 0 and ext == ".png"))
            lines.append(f"{rel} {0 if 'unlabel' in list_name else i % CLASSES}\n")
        (root / list_name).write_text("".join(lines))
    (root / "labels.txt").write_text("".join(f"{k} class_{k}\n" for k in range(CLASSES)))
    return root


def list_config(root, **kw):
    d = ml_collections.ConfigDict(base_config().data)
    d.update(dict(name="toy", source="list", root=str(root), num_classes=CLASSES, label_names_file="labels.txt",
                  image_size=16, augment="imagenet"))
    d.update(kw)
    return d


def take(pipe, k):
    it = iter(pipe.dataset)
    return [next(it) for _ in range(k)]


@pytest.fixture(scope="session")
def tfds_dir(lists, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfds")
    result = prepare_lists(str(out), "kdtoy", str(lists), train_list="train_list.txt", test_list="val_list.txt",
                           unlabeled_list="train_list_unlabel.txt", num_classes=CLASSES,
                           label_names_file="labels.txt", examples_per_shard=10, threads=2)
    assert (result["train"], result["test"], result["unlabeled"]) == (N_TRAIN, N_VAL, N_UNLABELED)
    return out


# ---- list files ------------------------------------------------------------------------------------------------
def test_list_source_records_batches_and_eval(lists):
    train, info = open_source(list_config(lists), "train")
    assert len(train) == N_TRAIN and info.num_classes == CLASSES and info.image_shape == (16, 16, 3)
    assert info.label_names == [f"class_{k}" for k in range(CLASSES)]
    r = train[0]  # a grayscale PNG comes back as RGB
    assert r["image"].dtype == np.uint8 and r["image"].ndim == 3 and r["image"].shape[2] == 3
    pipe = train_pipeline(train, global_batch=8, epochs=1, seed=0)
    batches = take(pipe, pipe.total_steps)
    b = batches[0]
    assert set(b) == {"image", "label"} and b["image"].shape == (8, 16, 16, 3) and b["image"].dtype == np.uint8
    assert b["label"].dtype == np.int32
    ids = np.concatenate([ident(x["image"]) for x in batches])
    assert sorted(ids) == list(range(N_TRAIN))  # one epoch = every image once
    np.testing.assert_array_equal(np.concatenate([x["label"] for x in batches]), ids % CLASSES)
    test, _ = open_source(list_config(lists), "test")
    evals = list(eval_batches(test, global_batch=5))
    assert [e["image"].shape for e in evals] == [(5, 16, 16, 3)] * 3 and evals[-1]["mask"].tolist() == [1, 1, 0, 0, 0]
    got = np.concatenate([ident(e["image"])[e["mask"] > 0] for e in evals])
    assert got.tolist() == list(range(N_TRAIN, N_TRAIN + N_VAL))  # eval keeps list order


def test_list_pipeline_determinism_resume_and_processes(lists):
    train, _ = open_source(list_config(lists, mixup_alpha=0.2), "train")
    a = take(train_pipeline(train, global_batch=8, epochs=2, seed=1, num_threads=3), 5)
    pipe = train_pipeline(train, global_batch=8, epochs=2, seed=1, num_threads=1)
    it = iter(pipe.dataset)
    [next(it) for _ in range(2)]
    state = it.get_state()
    again = iter(train_pipeline(train, global_batch=8, epochs=2, seed=1).dataset)
    again.set_state(state)
    for x, y in zip(a[2:], [next(again) for _ in range(3)]):
        assert sorted(x) == ["image", "label", "soft_label"] and x["soft_label"].shape == (8, CLASSES)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    plain, _ = open_source(list_config(lists), "train")
    parts = [take(train_pipeline(plain, global_batch=8, epochs=1, seed=1, process_index=p, process_count=2), 4)
             for p in (0, 1)]
    seen = [set(np.concatenate([ident(b["image"]) for b in part]).tolist()) for part in parts]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(N_TRAIN))


def test_ssld_mixes_unlabeled_in_ratio_with_label_mask(lists):
    cfg = list_config(lists, unlabeled_list="train_list_unlabel.txt", unlabeled_ratio=0.25, augment="flip")
    train, _ = open_source(cfg, "train")
    assert len(train) == int(np.ceil(N_TRAIN / 0.75))  # every labeled image once per epoch
    pipe = train_pipeline(train, global_batch=8, epochs=3, seed=0)
    batches = take(pipe, pipe.total_steps)
    mask = np.concatenate([b["label_mask"] for b in batches])
    ids = np.concatenate([ident(b["image"]) for b in batches])
    assert batches[0]["label_mask"].dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert abs((mask == 0).mean() - 0.25) < 0.05
    assert np.all((ids >= N_TRAIN + N_VAL) == (mask == 0))  # unlabeled rows are exactly the unlabeled images
    labeled = ids[mask == 1]
    assert np.bincount(labeled, minlength=N_TRAIN).max() <= 3 and len(set(labeled)) == N_TRAIN
    assert len(set(ids[mask == 0])) == N_UNLABELED  # walks the whole unlabeled list over the epochs
    test, _ = open_source(cfg, "test")
    assert "label_mask" not in next(iter(eval_batches(test, global_batch=4)))


# ---- TFDS ArrayRecord: prepare once, read fast -------------------------------------------------------------------
def test_prepared_lists_read_back_through_tfds(lists, tfds_dir):
    import tensorflow_datasets as tfds

    raw = tfds.data_source("kdtoy", split="test", data_dir=str(tfds_dir), download=False)
    assert len(raw) == N_VAL and int(raw[0]["label"]) == N_TRAIN % CLASSES
    cfg = list_config(lists, source="tfds", tfds_data_dir=str(tfds_dir), name="kdtoy", num_classes=0,
                      label_names_file=None)  # the names prepare_data stored
    test, info = open_source(cfg, "test")
    listed, _ = open_source(list_config(lists), "test")
    assert info.num_classes == CLASSES and info.label_names == [f"class_{k}" for k in range(CLASSES)]
    assert test.image_shape == (None, None, 3)
    for i in range(N_VAL):  # the same bytes, so the same pixels
        np.testing.assert_array_equal(test[i]["image"], listed[i]["image"])
        assert int(test[i]["label"]) == int(listed[i]["label"])
    # auto reads the one location the config names; naming two of them is ambiguous
    only_tfds = list_config(lists, source="auto", tfds_data_dir=str(tfds_dir), name="", label_names_file=None)
    only_tfds.root = None
    auto, _ = open_source(only_tfds, "train")
    assert "TFDS kdtoy:train" in auto.description  # name "": the one dataset in tfds_data_dir
    with pytest.raises(ConfigError, match="data.source: is 'auto' but the config names data for several sources"):
        open_source(list_config(lists, source="auto", tfds_data_dir=str(tfds_dir), name="kdtoy"), "train")
    ssld, _ = open_source(list_config(lists, source="tfds", tfds_data_dir=str(tfds_dir), name="kdtoy",
                                      label_names_file=None, unlabeled_split="unlabeled", augment="flip"), "train")
    batch = take(train_pipeline(ssld, global_batch=16, epochs=1, seed=0), 1)[0]
    assert batch["image"].shape == (16, 16, 16, 3) and 0 < batch["label_mask"].sum() < 16


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_to_tfds_roundtrip(tmp_path):
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 24), ("t10k", 8))}
    labels = {s: np.arange(len(images[s])) % 10 for s in images}
    for s in images:
        _write_idx(idx_dir / f"{s}-images-idx3-ubyte.gz", images[s])
        _write_idx(idx_dir / f"{s}-labels-idx1-ubyte.gz", labels[s])
    (tmp_path / "names.txt").write_text("".join(f"digit {k}\n" for k in range(10)))
    # named fashion_mnist, but not Debian's Fashion-MNIST: no Fashion-MNIST label names are made up for it
    result = prepare_idx(str(tmp_path / "out"), "fashion_mnist", str(idx_dir))
    assert (result["train"], result["test"]) == (24, 8)
    cfg = ml_collections.ConfigDict(base_config().data)
    cfg.update(dict(source="tfds", tfds_data_dir=str(tmp_path / "out")))
    train, info = open_source(cfg, "train")
    assert info.image_shape == (28, 28, 1) and info.label_names is None and len(train) == 24
    prepare_idx(str(tmp_path / "out2"), "toy", str(idx_dir), label_names_file=str(tmp_path / "names.txt"))
    cfg.update(dict(tfds_data_dir=str(tmp_path / "out2")))
    assert open_source(cfg, "test")[1].label_names[3] == "digit 3"
    for i in (0, 23):
        np.testing.assert_array_equal(train[i]["image"][..., 0], images["train"][i])
        assert int(train[i]["label"]) == labels["train"][i]
    batch = take(train_pipeline(train, global_batch=8, epochs=1, seed=0), 1)[0]  # fixed size: batch-level path
    assert batch["image"].shape == (8, 28, 28, 1)


def test_prepare_data_cli(lists, tmp_path):
    out = subprocess.run([sys.executable, "-m", "kdjax.tools.prepare_data", f"--root={lists}", "--num_classes=5",
                          "--test_list=", f"--out_dir={tmp_path}", "--name=cli_toy", "--threads=1"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train 32" in out.stdout and "--config.data.source=tfds" in out.stdout
    again = subprocess.run([sys.executable, "-m", "kdjax.tools.prepare_data", f"--root={lists}", "--num_classes=5",
                            f"--out_dir={tmp_path}", "--name=cli_toy"], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


# ---- bad data ------------------------------------------------------------------------------------------------
@pytest.fixture()
def broken(lists, tmp_path):
    """A root with the good train images plus a list we can break line by line."""
    os.symlink(lists / "train", tmp_path / "train")
    os.symlink(lists / "labels.txt", tmp_path / "labels.txt")
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a JPEG at all")
    good = (lists / "train_list.txt").read_text().splitlines()

    def write(lines, name="train_list.txt"):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return tmp_path

    write.good = good
    return write


@pytest.mark.parametrize("case,pattern", [
    ("malformed", r"train_list.txt line 3: expected `relative/path label`"),
    ("label", r"train_list.txt line 3: label 7 is out of range for data.num_classes=5"),
    ("empty", r"train_list.txt: the split is empty"),
    ("missing_list", r"list file .*nope.txt does not exist"),
])
def test_bad_lists_fail_naming_file_and_line(broken, case, pattern):
    lines = list(broken.good[:6])
    if case == "malformed":
        lines[2] = "train/n01/img_002.JPEG three"
    elif case == "label":
        lines[2] = "train/n01/img_002.JPEG 7"
    elif case == "empty":
        lines = ["", "   "]
    root = broken(lines)
    kw = {"train_list": "nope.txt"} if case == "missing_list" else {}
    with pytest.raises(DataError, match=pattern):
        open_source(list_config(root, **kw), "train")


@pytest.mark.parametrize("bad_line,reason", [("garbage.jpg 1", "cannot decode the image"),
                                             ("train/n01/missing.JPEG 1", "the image file does not exist")])
def test_bad_images_fail_naming_file_and_line_unless_skipped(broken, bad_line, reason):
    lines = list(broken.good[:16])
    lines[4] = bad_line
    root = broken(lines)
    path = bad_line.split()[0]
    if "missing" in path:  # a missing file is found when the list is opened (before training), naming the line;
        with pytest.raises(DataError, match=rf"train_list.txt line 5: .*{path} does not exist"):
            open_source(list_config(root), "train")
        (root / path).write_bytes(b"")  # one that vanishes after that is found when read (read per batch: a split
        src, _ = open_source(list_config(root, decode_once_mb=0), "train")  # decoded once at open reads it then)
        (root / path).unlink()
    else:
        src, _ = open_source(list_config(root), "train")
    with pytest.raises(BadImage, match=rf"{path} \(.*train_list.txt line 5\): {reason}"):
        src[4]
    with pytest.raises(DataError, match=rf"{path} .*line 5"):  # also through the threaded pipeline
        take(train_pipeline(src, global_batch=16, epochs=1, seed=0), 1)
    skipping, _ = open_source(list_config(root, skip_bad_images=True), "train")
    pipe = train_pipeline(skipping, global_batch=8, epochs=1, seed=0)
    batches = take(pipe, 2)
    assert all(b["image"].shape == (8, 16, 16, 3) and sorted(b) == ["image", "label"] for b in batches)
    assert pipe.bad_images.value == 1
    ids = np.concatenate([ident(b["image"]) for b in batches])
    assert len(ids) == 16 and 4 not in ids  # replaced by the next good image
    from kdjax.data.badimages import BadImageCount

    count = BadImageCount()
    evals = list(eval_batches(skipping, global_batch=8, bad_images=count))
    assert count.value == 1 and sum(e["mask"].sum() for e in evals) == 15


def test_undecodable_tfds_record_is_named(tmp_path):
    from kdjax.data.arrayrecord import SplitRecords, TfdsWriter, encode_png

    writer = TfdsWriter(str(tmp_path), "kdbad", num_classes=2, encoding="png")
    good = encode_png(np.zeros((4, 4, 3), np.uint8))
    writer.write_split(SplitRecords("train", [(good, 0), (b"\x89PNG broken", 1), (good, 1)], 3))
    writer.finish()
    cfg = ml_collections.ConfigDict(base_config().data)
    cfg.update(dict(source="tfds", name="kdbad", tfds_data_dir=str(tmp_path), image_size=4))
    src, _ = open_source(cfg, "train")
    assert src[0]["image"].shape == (4, 4, 3)
    with pytest.raises(BadImage, match=r"TFDS kdbad:train record 1: cannot decode"):
        src[1]
    with pytest.raises(DataError, match="no prepared TFDS dataset 'absent'"):
        open_source(ml_collections.ConfigDict(dict(cfg, name="absent")), "train")


def test_prepare_lists_checks_images(broken, tmp_path):
    lines = list(broken.good[:6])
    lines[1] = "garbage.jpg 0"
    root = broken(lines)
    with pytest.raises(BadImage, match=r"garbage.jpg \(.*line 2\)"):
        prepare_lists(str(tmp_path / "o1"), "t", str(root), train_list="train_list.txt", num_classes=5)
    result = prepare_lists(str(tmp_path / "o2"), "t", str(root), train_list="train_list.txt", num_classes=5,
                           skip_bad_images=True)
    assert result["train"] == 5 and len(result["skipped"]) == 1


def test_list_config_errors(lists):
    with pytest.raises(ConfigError, match="data.num_classes"):
        open_source(list_config(lists, num_classes=0, label_names_file=None), "train")
    with pytest.raises(ConfigError, match="data.image_size"):
        open_source(list_config(lists, image_size=0), "train")
    with pytest.raises(ConfigError, match="data.unlabeled_ratio"):
        open_source(list_config(lists, unlabeled_list="train_list_unlabel.txt", unlabeled_ratio=1.0), "train")
    with pytest.raises(DataError, match="has 5 label names but data.num_classes=4"):
        open_source(list_config(lists, num_classes=4), "train")
