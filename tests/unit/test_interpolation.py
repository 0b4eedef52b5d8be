"""data.interpolation: PaddleClas' `interpolation: bicubic` (resnet34_distill_resnet18_afd.yaml) becomes PIL's bicubic
filter for the training crop, the evaluation resize, the export's recorded preprocessing and kdjax.infer; a filter
kdjax lacks, or different filters for the two splits, are refused by YAML path."""

import numpy as np
import pytest
from PIL import Image

from test_paddleclas_seed import seed_yaml

TRAIN_OP = "DataLoader.Train.dataset.transform_ops.1.RandCropImage.interpolation"
EVAL_OP = "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.interpolation"


def _image(h=37, w=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_eval_resize_uses_the_chosen_filter():
    from kdjax.data.transforms import resize_center_crop

    image = _image()
    cubic = resize_center_crop(image, 16, 0.875, "bicubic")
    linear = resize_center_crop(image, 16, 0.875)
    # shorter side 37 → round(16 / 0.875) = 18: scale 18/37; the centred 16×16 window as a box in the source frame
    scale = 18 / 37
    new_w = max(16, int(round(53 * scale)))
    left, top = (new_w - 16) // 2, (18 - 16) // 2
    box = (left / scale, top / scale, (left + 16) / scale, (top + 16) / scale)
    expected = np.asarray(Image.fromarray(image).resize((16, 16), Image.Resampling.BICUBIC, box=box))
    np.testing.assert_array_equal(cubic, expected)
    assert np.abs(cubic.astype(int) - linear.astype(int)).max() > 0  # the filter is not ignored


def test_train_crop_and_record_transforms_pass_the_filter_on():
    from kdjax.data.transforms import EvalRecordTransform, TrainRecordTransform, random_resized_crop

    image = _image(64, 80, 1)
    a = random_resized_crop(image, 24, np.random.default_rng(3), interpolation="bicubic")
    b = random_resized_crop(image, 24, np.random.default_rng(3))
    assert a.shape == b.shape == (24, 24, 3) and np.abs(a.astype(int) - b.astype(int)).max() > 0
    t = TrainRecordTransform(24, True, interpolation="bicubic")({"image": image}, np.random.default_rng(3))
    np.testing.assert_array_equal(t["image"], a)
    e = EvalRecordTransform(24, 0.875, "bicubic")({"image": image})
    from kdjax.data.transforms import resize_center_crop

    np.testing.assert_array_equal(e["image"], resize_center_crop(image, 24, 0.875, "bicubic"))


def test_infer_preprocessing_follows_the_export():
    from kdjax.data.preprocess import prepare_image
    from kdjax.data.transforms import resize_center_crop

    image = _image(40, 60, 2)
    pre = {"channels": 3, "input_size": [16, 16, 3], "crop_ratio": 0.875, "interpolation": "bicubic"}
    np.testing.assert_array_equal(prepare_image(image, pre), resize_center_crop(image, 16, 0.875, "bicubic"))
    del pre["interpolation"]  # exports written before the field: bilinear, as they were evaluated
    np.testing.assert_array_equal(prepare_image(image, pre), resize_center_crop(image, 16, 0.875))


def test_config_field_is_checked():
    from kdjax.config.defaults import base_config
    from kdjax.config.fields import check_fields
    from kdjax.errors import ConfigError

    c = base_config()
    assert c.data.interpolation == "bilinear"
    with c.unlocked():
        c.data.interpolation = "lanczos"
    with pytest.raises(ConfigError) as e:
        check_fields(c)
    assert e.value.field == "data.interpolation"


def test_yaml_bicubic_translates_and_mismatches_are_refused(tmp_path):
    from kdjax.config.paddleclas import YamlError, translate_file

    path = seed_yaml("dkd", tmp_path)
    assert translate_file(path).data.interpolation == "bilinear"
    both = translate_file(path, [f"{TRAIN_OP}=bicubic", f"{EVAL_OP}=bicubic"])
    assert both.data.interpolation == "bicubic"
    with pytest.raises(YamlError) as e:
        translate_file(path, [f"{TRAIN_OP}=bicubic"])
    assert str(e.value).startswith(f"{path}: DataLoader.Eval.dataset.transform_ops: evaluates with "
                                   f"interpolation=bilinear but trains with bicubic"), str(e.value)
    with pytest.raises(YamlError) as e:
        translate_file(path, [f"{TRAIN_OP}=nearest"])
    assert str(e.value).startswith(f"{path}: {TRAIN_OP}: 'nearest'"), str(e.value)


def test_identity_changes_only_when_set():
    """Runs recorded before the field existed keep their identity; a bicubic run is another run."""
    from kdjax.config.defaults import base_config
    from kdjax.config.identity import identity

    c = base_config()
    assert "interpolation" not in identity(c)["data"]
    with c.unlocked():
        c.data.interpolation = "bicubic"
    assert identity(c)["data"]["interpolation"] == "bicubic"
