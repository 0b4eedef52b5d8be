"""The preprocessing a model is trained and evaluated with, resolved once per run and recorded in its export, so
that `kdjax.infer` applies exactly what evaluation applied:

    decode (kdjax/data/decode.py: one decoder, values scaled by their type's range, `channels`)
    → resize the shorter side to size / crop_ratio, centre-crop size (kdjax/data/transforms.py; images already at
      the input size pass through unchanged; crop_ratio 1.0 where evaluation never resized: fixed-size data)
    → (x / 255 - mean) / std

spec.json gains "preprocess" {channels, input_size, resize, crop_ratio, mean, std, normalization, pixel_stats} and
"data" (identity.py: name, route, location, classes, train/test sizes and fingerprints, and the fields that open the
test split again).
"""

import dataclasses
from typing import Optional

import numpy as np

from kdjax.data.options import resizes_records
from kdjax.data.stats import describe, normalization, pixel_statistics

RESIZE = "short_side_center_crop"


def complete(data, info, train_source, test_info=None, log=print):
    """Add the training images' statistics, the normalisation and the test split's identity to `info` (the
    training split's DatasetInfo); logs the statistics when they are what the run normalises with."""
    if test_info is not None:
        info.identity["test"] = test_info.identity.get("test")
        info.reopen = test_info.reopen
    channels = int(info.image_shape[-1])
    stats = pixel_statistics(train_source) if train_source is not None else None
    info.stats = stats
    info.mean, info.std, info.normalization = normalization(data, stats, channels)
    if info.normalization == "computed" and log is not None:
        log(f"data.mean/std not set: {describe(stats)} ({info.description}); recorded in the run and the export")
    return info


def run_normalization(data, info, train_source=None):
    """(mean, std) a Trainer normalises with: the resolved ones (config.check), else the config's, else computed
    from `train_source` as check computes them (a Trainer built from open_source alone); neutral only for synthetic
    data (kdjax.tools.bench opens nothing)."""
    if getattr(info, "mean", None) is not None:
        return tuple(info.mean), tuple(info.std)
    mean, std, _ = normalization(data, None, int(info.image_shape[-1]))
    if mean is not None:
        return mean, std
    if train_source is not None:
        complete(data, info, train_source, log=None)
        return tuple(info.mean), tuple(info.std)
    return (0.0,), (1.0,)  # synthetic batches


def eval_crop_ratio(source) -> float:
    """The crop ratio evaluation applies to `source`: the configured one where it resizes records, else 1.0 (the
    images are used whole)."""
    opts = getattr(source, "options", None)
    if opts is None:
        return 1.0
    resizes = resizes_records(dataclasses.replace(opts, augment="none"), getattr(source, "image_shape", None))
    return float(opts.eval_crop_ratio) if resizes else 1.0


def record(info) -> dict:
    """What the run read and how it normalised: for workdir/config.json, summary.json and spec.json "data"."""
    out = dict(info.identity or {})
    out["mean"], out["std"], out["normalization"] = list(info.mean or ()), list(info.std or ()), info.normalization
    if info.reopen:
        out["reopen"] = dict(info.reopen)
    return out


def _interpolation(source) -> str:
    """The resize filter evaluation uses on `source` (data.interpolation; bilinear for sources without options)."""
    return str(getattr(getattr(source, "options", None), "interpolation", "bilinear"))


def export_fields(info, test_source) -> dict:
    """make_spec(**export_fields(...)): the dataset's name, identity and the whole eval preprocessing."""
    h, w, c = (int(v) for v in info.image_shape)
    data = record(info)
    return {
        "dataset": data.get("name", ""),
        "data": data,
        "preprocess": {"channels": c, "input_size": [h, w], "resize": RESIZE,
                       "crop_ratio": eval_crop_ratio(test_source), "interpolation": _interpolation(test_source),
                       "mean": list(info.mean or ()),
                       "std": list(info.std or ()), "normalization": info.normalization,
                       "pixel_stats": info.stats},
    }


def spec_preprocess(spec: dict) -> dict:
    """The preprocessing an export records; for exports written before it was recorded (and converted checkpoints):
    the input size's channels, resize + centre crop at 0.875 (PaddleClas' eval), the spec's mean/std."""
    h, w, c = (int(v) for v in spec["input_size"])
    pre = dict(spec.get("preprocess") or {})
    pre.setdefault("channels", c)
    pre.setdefault("input_size", [h, w])
    pre.setdefault("resize", RESIZE)
    pre.setdefault("crop_ratio", 0.875)
    pre.setdefault("mean", spec.get("mean") or [0.0] * c)
    pre.setdefault("std", spec.get("std") or [1.0] * c)
    return pre


def prepare_image(native: np.ndarray, pre: dict) -> np.ndarray:
    """A decoded uint8 HWC image (its own channels) → what the export's evaluation fed the model (uint8)."""
    from kdjax.data.decode import to_channels
    from kdjax.data.transforms import resize_center_crop

    image = to_channels(native, int(pre["channels"]))
    return resize_center_crop(image, tuple(int(v) for v in pre["input_size"]), float(pre["crop_ratio"]),
                              str(pre.get("interpolation", "bilinear")))


def input_differences(natives, files, pre: dict, kinds: Optional[dict] = None) -> dict:
    """{kind: [(file, detail)]} of the input images that differ from what the export was trained on: "channels",
    "size" (or aspect ratio), "brightness" (polarity), "contrast" (value range). Accumulates into `kinds`."""
    stats = pre.get("pixel_stats") or {}
    h, w = (int(v) for v in pre["input_size"])
    channels = int(pre["channels"])
    kinds = {} if kinds is None else kinds

    def note(kind, file, detail):
        kinds.setdefault(kind, []).append((file, detail))

    for image, file in zip(natives, files):
        ih, iw, ic = image.shape
        if ic != channels:
            note("channels", file, f"{ic}-channel")
        if stats.get("height"):
            fixed = stats["height"][0] == stats["height"][1] and stats["width"][0] == stats["width"][1]
            lo, hi = stats.get("aspect", [iw / ih, iw / ih])
            if fixed and (ih, iw) != (stats["height"][0], stats["width"][0]):
                note("size", file, f"{iw}×{ih}")
            elif not fixed and not lo / 1.25 <= iw / ih <= hi * 1.25:
                note("size", file, f"{iw}×{ih}")
        elif (ih, iw) != (h, w):  # an export without recorded statistics: its input size
            note("size", file, f"{iw}×{ih}")
        x = image.astype(np.float32) / 255.0
        if stats.get("image_mean"):
            lo, hi = stats["image_mean"]
            m = float(x.mean())
            if not lo - 0.1 <= m <= hi + 0.1:
                note("brightness", file, f"mean {m:.2f}")
        if stats.get("image_std"):
            lo, hi = stats["image_std"]
            s = float(x.reshape(-1, ic).std(axis=0).mean())
            if not lo * 0.5 - 0.02 <= s <= hi * 2 + 0.02:
                note("contrast", file, f"std {s:.2f}")
    return kinds


def warning_lines(kinds: dict, total: int, pre: dict) -> list:
    """One line per kind (input_differences), naming how many images and an example."""
    return [_warning(kind, items, total, pre) for kind, items in kinds.items()]


def _warning(kind, items, total, pre) -> str:
    stats = pre.get("pixel_stats") or {}
    count = f"{len(items)} of {total} input images"
    example = f"e.g. {items[0][0]}: {items[0][1]}"
    if kind == "channels":
        want = "grayscale (1 channel)" if int(pre["channels"]) == 1 else "colour (3 channels)"
        what = "converted to grayscale" if int(pre["channels"]) == 1 else "the gray channel repeated"
        return f"warning: {count} differ in channels from the training images, which were {want}: {what} ({example})"
    if kind == "size":
        if stats.get("height") and stats["height"][0] == stats["height"][1]:
            trained = f"all {stats['width'][0]}×{stats['height'][0]}"
        elif stats.get("aspect"):
            lo, hi = stats["aspect"]
            trained = f"aspect ratios (w/h) {lo:.2f}–{hi:.2f}"
        else:
            trained = f"model input {pre['input_size'][1]}×{pre['input_size'][0]}"
        return (f"warning: {count} differ in size or aspect ratio from the training images ({trained}): resized "
                f"(shorter side) and centre-cropped to {pre['input_size'][1]}×{pre['input_size'][0]} ({example})")
    if kind == "brightness":
        lo, hi = stats["image_mean"]
        return (f"warning: {count} are far brighter or darker than the training images (their mean pixel "
                f"{lo:.2f}–{hi:.2f} for 98% of them): another polarity (e.g. dark on light) or value range? "
                f"({example})")
    lo, hi = stats["image_std"]
    return (f"warning: {count} have a contrast (pixel std) far from the training images' ({lo:.2f}–{hi:.2f}): "
            f"another value range? ({example})")
