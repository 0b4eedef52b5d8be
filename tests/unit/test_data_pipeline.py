"""Data pipeline mechanics on in-memory sources, and the real Fashion-MNIST IDX files.

Shapes and dtypes of batches, determinism under a seed, resume from a saved iterator position (also through
grain.checkpoint + Orbax, with threads, worker processes and augmentations), per-process disjointness, the
augmentation recipes and mixup/cutmix soft labels. File-backed sources (list files, TFDS ArrayRecord, SSLD, bad
data) are in test_data_files.py.
"""

import os

import grain
import ml_collections
import numpy as np
import pytest

from kdjax.config.defaults import base_config
from kdjax.data import idx as idx_lib
from kdjax.data.augment import make_batch_augment
from kdjax.data.idx import read_idx
from kdjax.data.mixing import MixBatch
from kdjax.data.options import PipelineOptions
from kdjax.data.pipeline import eval_batches, train_pipeline
from kdjax.data.sources import open_source
from kdjax.data.transforms import random_resized_crop_box, resize_center_crop
from kdjax.errors import ConfigError, DataError

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION), reason="dataset-fashion-mnist not installed")


class IndexSource:
    """Record i: an 8×8×3 image whose pixels hold i % 256 and label i (so batches say which records they hold)."""

    image_shape = (8, 8, 3)
    description = "index source"

    def __init__(self, n=96):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        i = int(i)
        image = np.full((8, 8, 3), i % 256, np.uint8)
        image[0, :4] = 255 - (i % 256)  # asymmetric, so flips and crops show
        return {"image": image, "label": np.int32(i)}


def take(pipe_or_it, k):
    it = iter(pipe_or_it.dataset) if hasattr(pipe_or_it, "dataset") else pipe_or_it
    return [next(it) for _ in range(k)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def data_config(**kw):
    d = ml_collections.ConfigDict(base_config().data)
    d.update(kw)
    return d


# ---- the offline default: Fashion-MNIST IDX ----------------------------------------------------------------------
@needs_fashion
def test_fashion_mnist_idx_shapes_and_labels():
    train, info = open_source(data_config(source="idx"), "train")
    test, _ = open_source(data_config(source="idx"), "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert info.num_classes == 10 and info.image_shape == (28, 28, 1) and info.label_names[9] == "Ankle boot"
    assert list(train.labels[:5]) == [9, 0, 0, 3, 0] and list(test.labels[:5]) == [9, 2, 1, 1, 6]
    assert np.bincount(test.labels).tolist() == [1000] * 10
    r = train[0]
    assert r["image"].dtype == np.uint8 and r["image"].shape == (28, 28, 1) and int(r["image"].sum()) == 76247
    pipe = train_pipeline(train, global_batch=64, epochs=0.01, seed=0)
    b = take(pipe, 1)[0]
    assert b["image"].shape == (64, 28, 28, 1) and b["image"].dtype == np.uint8
    assert b["label"].dtype == np.int32 and b["label"].min() >= 0 and b["label"].max() <= 9
    assert set(b) == {"image", "label"}  # no SSLD, no mixing: no extra keys
    assert pipe.steps_per_epoch == 937 and pipe.total_steps == 9


@needs_fashion
def test_fashion_mnist_lookup_and_missing(tmp_path, monkeypatch):
    """The data you name wins: a named folder is read or refused, never replaced by Debian's Fashion-MNIST, which
    is the default only when nothing is named."""
    empty = tmp_path / "empty"
    empty.mkdir()
    # an explicit data_dir without the files is an error naming the field (it used to fall back to Debian's copy)
    for source in ("idx", "auto"):
        with pytest.raises(ConfigError, match=r"config\.data\.data_dir: .*empty.* lacks the IDX files"):
            open_source(data_config(source=source, data_dir=str(empty), test_limit=10), "test")
    # nothing named: Debian's copy, with Fashion-MNIST's name and labels
    src, info = open_source(data_config(test_limit=10), "test")
    assert len(src) == 10 and FASHION in info.description
    assert info.identity["default_data"] and info.identity["name"] == "fashion_mnist"
    # naming two locations with source=auto is ambiguous
    with pytest.raises(ConfigError, match=r"config\.data\.source: is 'auto' but the config names data for several"):
        open_source(data_config(tfds_data_dir=str(empty), data_dir=str(empty)), "train")
    # nothing named and no Debian copy: the error says how to get the data
    monkeypatch.setattr(idx_lib, "DEBIAN_FASHION_MNIST", str(tmp_path / "nowhere"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(empty))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        open_source(data_config(), "train")


def test_idx_corrupt_file_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + b"\0" * 7)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        read_idx(str(path))


# ---- pipeline mechanics ------------------------------------------------------------------------------------------
def test_deterministic_under_seed_and_epoch_coverage():
    src = IndexSource(96)
    a = take(train_pipeline(src, global_batch=16, epochs=2, seed=3, augment="none"), 12)
    b = take(train_pipeline(src, global_batch=16, epochs=2, seed=3, augment="none"), 12)
    c = take(train_pipeline(src, global_batch=16, epochs=2, seed=4, augment="none"), 12)
    assert_same(a, b)
    assert not np.array_equal(a[0]["label"], c[0]["label"])
    epoch1 = np.concatenate([x["label"] for x in a[:6]])
    epoch2 = np.concatenate([x["label"] for x in a[6:]])
    assert sorted(epoch1) == list(range(96)) and sorted(epoch2) == list(range(96))
    assert not np.array_equal(epoch1, epoch2)  # reshuffled each epoch


def test_processes_read_disjoint_slices_whose_union_is_the_epoch():
    src = IndexSource(96)
    parts = [take(train_pipeline(src, global_batch=16, epochs=1, seed=0, augment="none", process_index=p,
                                 process_count=2), 6) for p in (0, 1)]
    assert all(b["label"].shape == (8,) for part in parts for b in part)
    seen = [set(np.concatenate([b["label"] for b in part]).tolist()) for part in parts]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(96))
    with pytest.raises(ConfigError, match="train.batch_size"):
        train_pipeline(src, global_batch=15, epochs=1, seed=0, process_count=2)


@pytest.mark.parametrize("augment,mix", [("crop_flip", {}), ("cifar", {"mixup_alpha": 0.4, "cutmix_alpha": 1.0})])
def test_resume_from_iterator_state_gives_the_exact_next_batches(augment, mix):
    opts = PipelineOptions(augment=augment, num_classes=96, **mix)
    pipe = train_pipeline(IndexSource(96), global_batch=16, epochs=3, seed=1, options=opts, num_threads=3)
    it = iter(pipe.dataset)
    take(it, 4)
    state = it.get_state()
    expected = take(it, 5)
    again = iter(train_pipeline(IndexSource(96), global_batch=16, epochs=3, seed=1, options=opts,
                                num_threads=1).dataset)
    again.set_state(state)
    assert_same(take(again, 5), expected)


def test_resume_through_grain_checkpoint_and_orbax(tmp_path):
    import orbax.checkpoint as ocp

    def make():
        return iter(train_pipeline(IndexSource(96), global_batch=16, epochs=2, seed=5, augment="crop_flip").dataset)

    it = make()
    take(it, 3)
    manager = ocp.CheckpointManager(str(tmp_path / "ckpt"), options=ocp.CheckpointManagerOptions(create=True))
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
    expected = take(it, 4)
    fresh = make()
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    manager.close()
    assert_same(take(fresh, 4), expected)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_and_resume():
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain workers read absl flags
        flags.FLAGS.mark_as_parsed()
    opts = PipelineOptions(augment="crop_flip")
    ref = take(train_pipeline(IndexSource(96), global_batch=16, epochs=2, seed=2, options=opts), 6)
    it = iter(train_pipeline(IndexSource(96), global_batch=16, epochs=2, seed=2, num_workers=2,
                             options=opts).dataset)
    try:
        got = take(it, 3)
        state = it.get_state()
    finally:
        it.close()
    assert_same(got, ref[:3])
    resumed = iter(train_pipeline(IndexSource(96), global_batch=16, epochs=2, seed=2, options=opts).dataset)
    resumed.set_state(state)
    assert_same(take(resumed, 3), ref[3:])


def test_eval_batches_cover_split_once_with_padding_masked():
    src = IndexSource(50)
    got = [list(eval_batches(src, global_batch=16, process_index=p, process_count=2)) for p in (0, 1)]
    for batches in got:
        assert len(batches) == 4 and all(b["image"].shape == (8, 8, 8, 3) for b in batches)
    labels = [b["label"][b["mask"] > 0] for batches in got for b in batches]
    assert sorted(np.concatenate(labels).tolist()) == list(range(50))
    assert sum(float(b["mask"].sum()) for batches in got for b in batches) == 50


# ---- augmentations -----------------------------------------------------------------------------------------------
def test_batch_augment_recipes():
    rng = np.random.default_rng(0)
    images = np.stack([IndexSource()[i]["image"] for i in range(32)])
    batch = {"image": images, "label": np.arange(32, dtype=np.int32)}
    assert make_batch_augment("none") is None
    flipped = make_batch_augment("flip")(batch, rng)["image"]
    assert all(np.array_equal(f, x) or np.array_equal(f, x[:, ::-1]) for f, x in zip(flipped, images))
    assert any(not np.array_equal(f, x) for f, x in zip(flipped, images))
    cifar = make_batch_augment("cifar")(batch, np.random.default_rng(1))["image"]
    assert cifar.shape == images.shape and cifar.dtype == np.uint8
    assert (cifar == 0).any()  # zero padding shifted in (pad 4 on 8×8)
    with pytest.raises(ValueError, match="unknown augmentation"):
        make_batch_augment("autoaugment")


def test_mixup_cutmix_soft_labels():
    images = np.stack([IndexSource()[i]["image"] for i in range(16)])
    batch = {"image": images, "label": (np.arange(16) % 5).astype(np.int32)}
    for kw in ({"mixup_alpha": 0.5}, {"cutmix_alpha": 1.0}):
        out = MixBatch(5, **kw)(batch, np.random.default_rng(0))
        assert out["image"].dtype == np.uint8 and out["image"].shape == images.shape
        soft = out["soft_label"]
        assert soft.dtype == np.float32 and soft.shape == (16, 5)
        np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(out["label"], batch["label"])
        assert (soft[np.arange(16), batch["label"]] >= soft.max(1) - 1e-6).mean() > 0.4
    masked = dict(batch, label_mask=np.r_[np.ones(8), np.zeros(8)].astype(np.float32))
    soft = MixBatch(5, mixup_alpha=0.5)(masked, np.random.default_rng(0))["soft_label"]
    assert soft.sum(1).max() <= 1 + 1e-6 and soft.sum(1).min() < 1  # unlabeled rows carry no ground truth


def test_record_geometry():
    rng = np.random.default_rng(0)
    for _ in range(50):
        l, t, r, b = random_resized_crop_box(60, 90, rng)
        assert 0 <= l < r <= 90 and 0 <= t < b <= 60
        assert 3 / 4 - 0.05 <= (r - l) / (b - t) <= 4 / 3 + 0.05
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 30:50] = 200  # a bright vertical band in the middle
    out = resize_center_crop(image, 16)
    assert out.shape == (16, 16, 3) and out[:, 8].min() > 150 and out[:, 0].max() < 50
    gray = resize_center_crop(np.zeros((30, 20, 1), np.uint8), 16)
    assert gray.shape == (16, 16, 1)


def test_config_errors():
    with pytest.raises(ConfigError, match="data.source"):
        open_source(data_config(source="hdf5"), "train")
    with pytest.raises(ConfigError, match="data.augment"):
        train_pipeline(IndexSource(), global_batch=8, epochs=1, seed=0, augment="autoaugment")
    with pytest.raises(ConfigError, match="data.num_classes"):
        train_pipeline(IndexSource(), global_batch=8, epochs=1, seed=0, options=PipelineOptions(mixup_alpha=0.2))
    with pytest.raises(ConfigError, match="data.image_size"):
        train_pipeline(IndexSource(), global_batch=8, epochs=1, seed=0, options=PipelineOptions(augment="imagenet"))


def test_gathered_batches_equal_grain_batches():
    """GatherBatches (one batched read per batch) yields exactly grain's per-record batch, with and without a
    batched source read, through shuffle, repeat and a per-process slice."""
    import grain

    from kdjax.data.pipeline import GatherBatches, _stack

    class Plain:
        def __init__(self, n):
            rng = np.random.default_rng(0)
            self.images = rng.integers(0, 256, (n, 5, 4, 1), dtype=np.uint8)
            self.labels = rng.integers(0, 10, n).astype(np.int32)

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {"image": self.images[i], "label": self.labels[i]}

    class Batched(Plain):
        calls = 0

        def _getitems(self, indices):
            Batched.calls += 1
            idx = np.asarray(indices)
            return [{"image": im, "label": lb} for im, lb in zip(self.images[idx], self.labels[idx])]

    for source in (Plain(37), Batched(37)):
        records = grain.MapDataset.source(source).shuffle(seed=3).repeat(4).slice(slice(1, None, 2))
        ours, theirs = GatherBatches(records, 6, _stack), records.batch(6, drop_remainder=True, batch_fn=_stack)
        assert len(ours) == len(theirs) == (4 * 37 // 2) // 6
        for b in range(len(ours)):
            mine, grains = ours[b], theirs[b]
            for key in ("image", "label"):
                np.testing.assert_array_equal(mine[key], grains[key])
        assert [int(v) for v in ours[3:5][0]["label"]] == [int(v) for v in theirs[3]["label"]]
    assert Batched.calls == len(ours) + 1  # one read per batch (+ the slice check above)


def test_indexed_records_batched_read_keeps_the_index():
    """The CRD / teacher-cache wrapper adds "index" on the batched read path too (GatherBatches uses it)."""
    import grain

    from kdjax.data.indexed import IndexedRecords
    from kdjax.data.pipeline import GatherBatches, _stack

    class Batched:
        def __init__(self):
            self.images = np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2, 1)
            self.labels = np.arange(20, dtype=np.int32) % 3

        def __len__(self):
            return 20

        def __getitem__(self, i):
            return {"image": self.images[i], "label": self.labels[i]}

        def _getitems(self, indices):
            return [self[i] for i in indices]

    records = grain.MapDataset.source(IndexedRecords(Batched())).shuffle(seed=1)
    batch = GatherBatches(records, 5, _stack)[1]
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["index"] * 4)
    np.testing.assert_array_equal(batch["label"], batch["index"] % 3)
