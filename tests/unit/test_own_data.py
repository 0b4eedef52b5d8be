"""Your own data, read correctly (issue 16), piece by piece on small generated datasets (tests/own_data.py): the one
decoder (16-bit / float / palette images scaled, channels), channels that follow the data, label names on every
route, statistics computed from the data (checked against an independent float64 computation), the dataset
fingerprint across routes, label-safe augmentation, prepare_data's metadata and hints, and decode-once."""

import io
import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from kdjax.config.defaults import base_config
from kdjax.data.augment import make_batch_augment, resolve_augment
from kdjax.data.decode import BadImage, decode_image, luma
from kdjax.data.pipeline import eval_batches
from kdjax.data.preprocess import complete
from kdjax.data.sources import open_source
from kdjax.data.transforms import resize_center_crop
from kdjax.errors import ConfigError
from kdjax.tools.prepare_data import prepare_idx, prepare_lists, read_hint
from own_data import colour_images, glyph_images, write_idx, write_list


def data_config(**kw):
    d = ml_collections.ConfigDict(base_config().data)
    d.update(kw)
    return d


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def glyph_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("glyphs")
    return write_idx(root / "glyphs", glyph_images(300, 0), glyph_images(100, 1), names=list("bdpq()[]<>"))


# ---- the decoder ---------------------------------------------------------------------------------------------------
def test_16bit_float_and_palette_images_are_scaled_not_clipped():
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    sixteen = png_bytes(Image.fromarray(eight.astype(np.uint16) * 257))
    assert Image.open(io.BytesIO(sixteen)).mode.startswith("I")
    np.testing.assert_array_equal(decode_image(sixteen, "x")[..., 0], eight)  # 65535 → 255, not clipped to 255 early
    odd = rng.integers(0, 65536, (5, 5)).astype(np.uint16)
    np.testing.assert_array_equal(decode_image(png_bytes(Image.fromarray(odd)), "x")[..., 0],
                                  np.rint(odd / 257.0).astype(np.uint8))
    unit = rng.random((6, 4)).astype(np.float32)  # a float TIFF in [0, 1]
    np.testing.assert_array_equal(decode_image(png_bytes(Image.fromarray(unit, "F"), format="TIFF"), "x")[..., 0],
                                  np.rint(unit.astype(np.float64) * 255).astype(np.uint8))
    with pytest.raises(BadImage, match="float pixel values span"):
        decode_image(png_bytes(Image.fromarray(unit * 1000 - 5, "F"), format="TIFF"), "bad.tif")
    colour = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    np.testing.assert_array_equal(decode_image(png_bytes(colour), "x"), np.asarray(colour.convert("RGB")))
    grays = Image.fromarray(eight).convert("P")  # a palette of grays stays one channel
    assert decode_image(png_bytes(grays), "x").shape == (9, 7, 1)


def test_channels_conversion_matches_pil():
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(luma(rgb)[..., 0], np.asarray(Image.fromarray(rgb).convert("L")))
    data = png_bytes(Image.fromarray(rgb))
    assert decode_image(data, "x").shape == (16, 16, 3) and decode_image(data, "x", 1).shape == (16, 16, 1)
    gray = png_bytes(Image.fromarray(rgb[..., 0]))
    assert decode_image(gray, "x").shape == (16, 16, 1)
    np.testing.assert_array_equal(decode_image(gray, "x", 3), np.repeat(rgb[..., :1], 3, -1))


def test_resize_center_crop_to_a_rectangle():
    image = np.arange(40 * 60, dtype=np.uint8).reshape(40, 60, 1)
    assert resize_center_crop(image, (20, 30), 1.0).shape == (20, 30, 1)
    assert resize_center_crop(image, 16, 0.875).shape == (16, 16, 1)
    assert resize_center_crop(image, (40, 60)) is image


# ---- channels, names and statistics follow the data -------------------------------------------------------------
def test_grayscale_list_stays_one_channel_unless_configured(tmp_path):
    images, labels = glyph_images(24, 2)
    root = write_list(tmp_path, {"train_list.txt": (images, labels), "val_list.txt": (images[:8], labels[:8])})
    cfg = dict(source="list", root=root, num_classes=10, image_size=20)
    train, info = open_source(data_config(**cfg), "train")
    assert info.image_shape == (20, 20, 1) and train[0]["image"].shape == (20, 20, 1)
    np.testing.assert_array_equal(train[3]["image"][..., 0], images[3])
    _, info3 = open_source(data_config(channels=3, **cfg), "train")
    assert info3.image_shape == (20, 20, 3)
    colours, clabels = colour_images(6, 0)  # one colour image in the list: the split is 3-channel
    mixed = write_list(tmp_path / "mixed", {"train_list.txt": (list(images[:6]) + list(colours), np.arange(12) % 10)})
    assert open_source(data_config(source="list", root=mixed, num_classes=10, image_size=20), "train")[1].image_shape[-1] == 3


def test_label_names_file_on_every_route(glyph_dir, tmp_path):
    names = list("bdpq()[]<>")
    _, info = open_source(data_config(data_dir=glyph_dir, label_names_file="labels.txt"), "train")
    assert info.label_names == names and info.identity["name"] == "glyphs" and not info.identity["default_data"]
    prepare_idx(str(tmp_path / "tfds"), "glyphs", glyph_dir)
    _, info = open_source(data_config(tfds_data_dir=str(tmp_path / "tfds"),
                                      label_names_file=os.path.join(glyph_dir, "labels.txt")), "test")
    assert info.label_names == names and info.identity["route"] == "tfds"
    for cfg in (dict(data_dir=glyph_dir), dict(tfds_data_dir=str(tmp_path / "tfds"))):
        with pytest.raises(ConfigError, match=r"config\.data\.label_names_file: 'missing.txt' does not exist"):
            open_source(data_config(label_names_file="missing.txt", **cfg), "train")


def test_statistics_computed_from_the_training_images(glyph_dir, tmp_path):
    cfg = data_config(data_dir=glyph_dir)
    train, info = open_source(cfg, "train")
    logged = []
    complete(cfg, info, train, log=logged.append)
    pixels = glyph_images(300, 0)[0].astype(np.float64) / 255.0  # independent float64 computation
    assert info.mean == (round(pixels.mean(), 4),) and info.std == (round(pixels.std(), 4),)
    assert info.normalization == "computed" and "computed from every 300 training images" in logged[0]
    assert info.stats["height"] == [20, 20] and 0 <= info.stats["image_mean"][0] <= info.stats["image_mean"][1]
    set_ = data_config(data_dir=glyph_dir, mean=(0.5,), std=(0.25,))
    complete(set_, info, train, log=logged.append)
    assert (info.mean, info.std, info.normalization, len(logged)) == ((0.5,), (0.25,), "config", 1)
    with pytest.raises(ConfigError, match="data.std: set both data.mean and data.std"):
        complete(data_config(data_dir=glyph_dir, mean=(0.5,)), info, train)
    with pytest.raises(ConfigError, match="data.mean: has 3 values but the images have 1 channel"):
        complete(data_config(data_dir=glyph_dir, mean=(0.5,) * 3, std=(0.2,) * 3), info, train)
    # a list of 3-channel images, decoded once into memory: every image
    colours, labels = colour_images(40, 3)
    root = write_list(tmp_path, {"train_list.txt": (colours, labels)})
    lcfg = data_config(source="list", root=root, num_classes=10, image_size=12)
    src, linfo = open_source(lcfg, "train")
    complete(lcfg, linfo, src, log=None)
    c = colours.astype(np.float64) / 255.0
    np.testing.assert_allclose(linfo.mean, np.round(c.mean(axis=(0, 1, 2)), 4))
    np.testing.assert_allclose(linfo.std, np.round(c.std(axis=(0, 1, 2)), 4))


def test_fingerprint_follows_the_contents_not_the_route(glyph_dir, tmp_path):
    prepare_idx(str(tmp_path / "tfds"), "glyphs", glyph_dir)
    idx = open_source(data_config(data_dir=glyph_dir), "test")[1].identity
    tfds = open_source(data_config(tfds_data_dir=str(tmp_path / "tfds")), "test")[1].identity
    assert idx["test"] == tfds["test"] and (idx["route"], tfds["route"]) == ("idx", "tfds")
    other = write_idx(tmp_path / "other", glyph_images(300, 5), glyph_images(100, 6))
    assert open_source(data_config(data_dir=other), "test")[1].identity["test"]["fingerprint"] != \
        idx["test"]["fingerprint"]


# ---- augmentation that keeps labels valid ------------------------------------------------------------------------
def test_auto_augmentation_never_flips_named_data():
    assert resolve_augment("auto", default_data=True) == "flip"
    assert resolve_augment("auto", default_data=False) == "crop"
    assert resolve_augment("cifar_train", default_data=False) == "cifar"
    images = np.zeros((64, 28, 28, 1), np.uint8)
    images[:, 10:18, 4:8] = 255  # a bar on the left: a flip would move it to the right half
    out = make_batch_augment("crop")({"image": images}, np.random.default_rng(0))["image"]
    columns = np.nonzero(out.max(axis=(0, 1, 3)))[0]
    assert columns.max() <= 8 + 2 and columns.min() >= 4 - 2  # shifted by at most the pad (2 at 28×28), never mirrored
    assert len({out[i].tobytes() for i in range(64)}) > 1  # it does shift
    flipped = make_batch_augment("flip")({"image": images}, np.random.default_rng(0))["image"]
    assert np.nonzero(flipped.max(axis=(0, 1, 3)))[0].max() >= 20


def test_sources_resolve_auto_augmentation(glyph_dir):
    assert open_source(data_config(data_dir=glyph_dir), "train")[0].options.augment == "crop"
    assert open_source(data_config(data_dir=glyph_dir, augment="flip"), "train")[0].options.augment == "flip"


# ---- prepare_data: metadata and hints say what was written -------------------------------------------------------
def test_prepare_data_metadata_matches_what_it_wrote(tmp_path):
    images, labels = glyph_images(30, 3)
    gray = write_list(tmp_path / "gray", {"train_list.txt": (images, labels)}, bits16=True)
    result = prepare_lists(str(tmp_path / "out"), "gray16", gray, train_list="train_list.txt", num_classes=10,
                           threads=1)
    features = json.load(open(os.path.join(result["directory"], "features.json")))
    text = json.dumps(features)
    assert '"encodingFormat": "png"' in text and result["shape"] == [20, 20, 1]
    assert "image_size" not in read_hint("gray16", str(tmp_path / "out"), result)
    train, info = open_source(data_config(tfds_data_dir=str(tmp_path / "out")), "train")
    assert info.image_shape == (20, 20, 1)
    np.testing.assert_array_equal(train[0]["image"][..., 0], images[0])  # 16-bit PNG read at full precision
    colours, clabels = colour_images(20, 4)
    jpegs = write_list(tmp_path / "jpg", {"train_list.txt": (colours, clabels)}, ext=".jpg",
                       sizes=((30, 50), (20, 40)))
    result = prepare_lists(str(tmp_path / "out"), "jpgs", jpegs, train_list="train_list.txt", num_classes=10,
                           threads=1)
    assert result["shape"] == [None, None, 3] and 20 <= result["short_side"] <= 40
    assert '"encodingFormat": "jpeg"' in json.dumps(json.load(open(os.path.join(result["directory"],
                                                                                  "features.json"))))
    assert f"--config.data.image_size={result['short_side']}" in read_hint("jpgs", "OUT", result)


# ---- decode once ---------------------------------------------------------------------------------------------------
def test_decode_once_serves_the_same_records_and_keeps_bad_images_bad(tmp_path):
    colours, labels = colour_images(20, 5)
    root = write_list(tmp_path, {"train_list.txt": (colours, labels)}, ext=".jpg", sizes=((14, 20), (12, 18)))
    with open(os.path.join(root, "train_list/00007.jpg"), "wb") as f:
        f.write(b"not an image")
    cfg = dict(source="list", root=root, num_classes=10, image_size=12, skip_bad_images=True)
    once, _ = open_source(data_config(**cfg), "train")
    each, _ = open_source(data_config(decode_once_mb=0, **cfg), "train")
    assert once.decoded == 20 and each.decoded == 0
    for i in (0, 5, 19):
        np.testing.assert_array_equal(once[i]["image"], each[i]["image"])
    for src in (once, each):
        with pytest.raises(BadImage, match="00007.jpg"):
            src[7]
    batches = [list(eval_batches(s, global_batch=8)) for s in (once, each)]
    for a, b in zip(*batches):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["mask"], b["mask"])
