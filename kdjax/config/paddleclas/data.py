"""`DataLoader` → `config.data` and the batch sizes: ImageNetDataset list files (`image_root` + `cls_label_path`)
become kdjax's `list` source, `transform_ops` one of kdjax's augmentation recipes.

Recognised pipelines (PaddleClas' ImageNet recipe, the one every distillation config of the seed document uses):
  Train: DecodeImage → RandCropImage(size[, scale]) → RandFlipImage(flip_code 1) → NormalizeImage(1/255, mean,
         std) [→ ToCHWImage]                                            → data.augment='imagenet', image_size
  Eval:  DecodeImage → ResizeImage(resize_short R) → CropImage(size S) → NormalizeImage [→ ToCHWImage]
                                                                        → data.eval_crop_ratio = S / R
`interpolation: bicubic` (both splits alike) → data.interpolation='bicubic'. Any other operator, order or parameter
is refused with its YAML path. PaddleClas resizes with OpenCV (backend cv2, its default) or PIL and draws
RandCropImage's box its own way (one draw, uniform aspect, area bounded to fit); kdjax resizes with PIL's
(antialiased) filter and draws boxes like torchvision; both are said in the notes.
"""

import os
from typing import List, Optional

from kdjax.config.paddleclas.context import Ctx, get, join

_DATASET_FIELDS = ("name", "image_root", "cls_label_path", "transform_ops", "delimiter", "relabel")


def _scale(ctx: Ctx, value, path: str) -> float:
    """NormalizeImage's scale: a number or PaddleClas' string form '1.0/255.0' (which it eval()s)."""
    if isinstance(value, str):
        parts = value.replace(" ", "").split("/")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            ctx.refuse(path, f"must be a number or 'a/b', got {value!r}")
        if len(nums) == 1:
            return nums[0]
        if len(nums) != 2 or nums[1] == 0:
            ctx.refuse(path, f"must be a number or 'a/b', got {value!r}")
        return nums[0] / nums[1]
    return ctx.number(value, path)


def _size(ctx: Ctx, value, path: str) -> int:
    if isinstance(value, list):
        if len(value) != 2 or value[0] != value[1]:
            ctx.refuse(path, f"kdjax trains on square images; got {value!r}")
        value = value[0]
    return ctx.number(value, path, integer=True, positive=True)


def _ops(ctx: Ctx, ops, path: str) -> List[tuple]:
    if not isinstance(ops, list) or not ops:
        ctx.refuse(path, "must list the transform operators")
    return [(i,) + ctx.one_entry(op if op is not None else {}, join(path, i)) for i, op in enumerate(ops)]


def _decode(ctx: Ctx, kw: dict, path: str):
    ctx.only(kw, path, ("to_rgb", "channel_first", "to_np", "backend"))
    if not get(kw, "to_rgb", True):
        ctx.refuse(join(path, "to_rgb"), "False feeds BGR images; kdjax decodes RGB")
    if get(kw, "channel_first", False):
        ctx.refuse(join(path, "channel_first"), "kdjax's augmentations work on HWC images (set it False)")
    if not get(kw, "to_np", True):
        ctx.refuse(join(path, "to_np"), "kdjax decodes to arrays")


def _normalize(ctx: Ctx, kw: dict, path: str):
    ctx.only(kw, path, ("scale", "mean", "std", "order", "output_fp16", "channel_num"))
    scale = _scale(ctx, get(kw, "scale", 1.0 / 255.0), join(path, "scale"))
    if abs(scale * 255.0 - 1.0) > 1e-6:
        ctx.refuse(join(path, "scale"), f"{scale!r}: kdjax scales pixels by 1/255")
    if get(kw, "order", "chw") not in ("", "hwc"):
        ctx.refuse(join(path, "order"), "kdjax normalises HWC images: order must be '' (as PaddleClas' configs "
                                        "have it)")
    if get(kw, "output_fp16", False):
        ctx.refuse(join(path, "output_fp16"), "kdjax feeds float32 (see --config.precision)")
    if get(kw, "channel_num", 3) != 3:
        ctx.refuse(join(path, "channel_num"), "kdjax feeds 3-channel images")
    mean = get(kw, "mean", [0.485, 0.456, 0.406])
    std = get(kw, "std", [0.229, 0.224, 0.225])
    for name, v in (("mean", mean), ("std", std)):
        if not isinstance(v, list) or len(v) != 3:
            ctx.refuse(join(path, name), f"must list 3 numbers, got {v!r}")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _filter_note(ctx: Ctx, kw: dict, path: str) -> str:
    """The resize filter of an op (data.interpolation): bilinear (PaddleClas' default) or bicubic, PIL's either way."""
    interp = get(kw, "interpolation") or "bilinear"
    if interp not in ("bilinear", "bicubic"):
        ctx.refuse(join(path, "interpolation"), f"{interp!r}: kdjax resizes with PIL's bilinear or bicubic filter")
    if get(kw, "backend", "cv2") not in ("cv2", "pil"):
        ctx.refuse(join(path, "backend"), "must be cv2 or pil")
    return interp


def _train_ops(ctx: Ctx, ops, path: str) -> dict:
    steps = _ops(ctx, ops, path)
    names = [n for _, n, _ in steps if n != "ToCHWImage"]
    want = ["DecodeImage", "RandCropImage", "RandFlipImage", "NormalizeImage"]
    if names != want:
        where = path
        for k, (i, n, _) in enumerate(s for s in steps if s[1] != "ToCHWImage"):
            if k >= len(want) or n != want[k]:
                where = join(path, f"{i}.{n}")
                break
        ctx.refuse(where, f"kdjax translates the training pipeline {' → '.join(want)} [→ ToCHWImage] (its "
                          f"'imagenet' augmentation); this one is {' → '.join(n for _, n, _ in steps)}")
    out = {}
    for i, name, kw in steps:
        where = join(path, f"{i}.{name}")
        if name == "DecodeImage":
            _decode(ctx, kw, where)
        elif name == "RandCropImage":
            ctx.only(kw, where, ("size", "scale", "ratio", "interpolation", "use_log_aspect", "backend",
                                 "progress_size"))
            out["image_size"] = _size(ctx, kw.get("size"), join(where, "size"))
            scale = get(kw, "scale", [0.08, 1.0])
            if not isinstance(scale, list) or len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
                ctx.refuse(join(where, "scale"), f"must be [low, high] in (0, 1], got {scale!r}")
            out["crop_scale"] = (float(scale[0]), float(scale[1]))
            ratio = get(kw, "ratio", [3 / 4, 4 / 3])
            if not (isinstance(ratio, list) and len(ratio) == 2 and abs(ratio[0] - 0.75) < 1e-6
                    and abs(ratio[1] - 4 / 3) < 1e-6):
                ctx.refuse(join(where, "ratio"), "kdjax's random-resized crop samples aspect ratios in [3/4, 4/3]")
            if get(kw, "progress_size") is not None:
                ctx.refuse(join(where, "progress_size"), "progressive resizing is not translated")
            out["interpolation"] = interp = _filter_note(ctx, kw, where)
            resizer = "PIL's" if get(kw, "backend", "cv2") == "pil" else "OpenCV's"
            ctx.note(where, f"kdjax's random-resized crop (area in scale, aspect 3/4..4/3, torchvision's sampling: up "
                            f"to 10 draws, log-uniform aspect, centre-crop fallback) with PIL's antialiased {interp} "
                            f"resize; PaddleClas draws once (uniform aspect, area bounded to fit) and resizes with "
                            f"{resizer} {interp} filter")
        elif name == "RandFlipImage":
            ctx.only(kw, where, ("flip_code",))
            if get(kw, "flip_code", 1) != 1:
                ctx.refuse(join(where, "flip_code"), "kdjax flips horizontally (flip_code 1) only")
        elif name == "NormalizeImage":
            out["mean"], out["std"] = _normalize(ctx, kw, where)
        elif name == "ToCHWImage":
            ctx.only(kw, where, ())
    return out


def _eval_ops(ctx: Ctx, ops, path: str) -> dict:
    steps = _ops(ctx, ops, path)
    names = [n for _, n, _ in steps if n != "ToCHWImage"]
    want = ["DecodeImage", "ResizeImage", "CropImage", "NormalizeImage"]
    if names != want:
        ctx.refuse(path, f"kdjax translates the evaluation pipeline {' → '.join(want)} [→ ToCHWImage] (resize the "
                         f"shorter side, centre crop); this one is {' → '.join(n for _, n, _ in steps)}")
    out, short = {}, None
    for i, name, kw in steps:
        where = join(path, f"{i}.{name}")
        if name == "DecodeImage":
            _decode(ctx, kw, where)
        elif name == "ResizeImage":
            ctx.only(kw, where, ("resize_short", "size", "interpolation", "backend", "return_numpy"))
            if get(kw, "resize_short") is None:
                ctx.refuse(join(where, "size"), "kdjax's evaluation resizes the shorter side (resize_short) before "
                                                "the centre crop; a fixed size is not translated")
            short = ctx.number(kw["resize_short"], join(where, "resize_short"), integer=True, positive=True)
            out["interpolation"] = _filter_note(ctx, kw, where)
        elif name == "CropImage":
            ctx.only(kw, where, ("size",))
            out["image_size"] = _size(ctx, kw.get("size"), join(where, "size"))
            if out["image_size"] > short:
                ctx.refuse(join(where, "size"), f"larger than resize_short {short}")
            out["eval_crop_ratio"] = out["image_size"] / short
        elif name == "NormalizeImage":
            out["mean"], out["std"] = _normalize(ctx, kw, where)
        elif name == "ToCHWImage":
            ctx.only(kw, where, ())
    return out


def _dataset(ctx: Ctx, ds, path: str) -> dict:
    ds = ctx.mapping(ds, path)
    if ds.get("name") != "ImageNetDataset":
        ctx.refuse(join(path, "name"), f"kdjax translates ImageNetDataset (image_root + cls_label_path list files), "
                                       f"got "
                                       f"{ds.get('name')!r}")
    ctx.only(ds, path, _DATASET_FIELDS + ("batch_transform_ops",))
    if get(ds, "batch_transform_ops"):
        ctx.refuse(join(path, "batch_transform_ops"), "mixup/cutmix make soft labels, which PaddleClas' CELoss turns "
                                                      "into softmax(label) targets; kdjax's gt_ce trains on the mixed "
                                                      "labels themselves, so this is not translated")
    if get(ds, "delimiter", " ") not in (" ", "\t"):
        ctx.refuse(join(path, "delimiter"), "kdjax's list files are `path label` split at the last whitespace")
    if get(ds, "relabel", False):
        ctx.refuse(join(path, "relabel"), "kdjax reads the labels as written")
    for f in ("image_root", "cls_label_path"):
        if not isinstance(ds.get(f), str) or not ds.get(f):
            ctx.refuse(join(path, f), "missing")
    return ds


def _sampler(ctx: Ctx, s, path: str, train: bool) -> int:
    s = ctx.mapping(s, path)
    if s.get("name", "DistributedBatchSampler") not in ("DistributedBatchSampler", "BatchSampler"):
        ctx.refuse(join(path, "name"), f"kdjax translates DistributedBatchSampler / BatchSampler, got "
                                       f"{s.get('name')!r}")
    ctx.only(s, path, ("name", "batch_size", "drop_last", "shuffle"))
    if train and not get(s, "shuffle", False):
        ctx.refuse(join(path, "shuffle"), "kdjax always shuffles the training data")
    if train and not get(s, "drop_last", False):
        ctx.note(join(path, "drop_last"), "False: kdjax trains on full batches only (an epoch is floor(N / batch) "
                                          "steps; PaddleClas adds a last smaller batch)")
    return ctx.number(s.get("batch_size"), join(path, "batch_size"), integer=True, positive=True)


def _loader_note(ctx: Ctx, loader, path: str):
    loader = ctx.mapping(loader, path)
    ctx.only(loader, path, ("num_workers", "use_shared_memory"))
    if loader:
        ctx.note(path, "not used: kdjax's input threads / worker processes are data.num_threads / data.num_workers")


def translate_data(ctx: Ctx, loader, cards: int = 1) -> dict:
    """config.data fields + train.batch_size / eval_batch_size for `DataLoader` (batch sizes × `cards`: PaddleClas'
    batch_size is per device, kdjax's the global batch)."""
    loader = ctx.mapping(loader, "DataLoader")
    if not loader:
        ctx.refuse("DataLoader", "missing: Train and Eval ImageNetDataset sections")
    ctx.only(loader, "DataLoader", ("Train", "Eval"))
    out = dict(source="list")
    for split in ("Train", "Eval"):
        section = ctx.mapping(loader.get(split), f"DataLoader.{split}")
        if not section:
            ctx.refuse(f"DataLoader.{split}", "missing")
        ctx.only(section, f"DataLoader.{split}", ("dataset", "sampler", "loader"))
        ds = _dataset(ctx, section.get("dataset"), f"DataLoader.{split}.dataset")
        batch = _sampler(ctx, section.get("sampler"), f"DataLoader.{split}.sampler", split == "Train")
        _loader_note(ctx, section.get("loader"), f"DataLoader.{split}.loader")
        ops_path = f"DataLoader.{split}.dataset.transform_ops"
        ops = (_train_ops if split == "Train" else _eval_ops)(ctx, ds.get("transform_ops"), ops_path)
        if split == "Train":
            out.update(ops, root=ds["image_root"], train_list=ds["cls_label_path"], batch_size=batch * cards)
            ctx.source("data.root", "DataLoader.Train.dataset.image_root")
            ctx.source("data.train_list", "DataLoader.Train.dataset.cls_label_path")
            ctx.source("train.batch_size", "DataLoader.Train.sampler.batch_size")
        else:
            if os.path.normpath(ds["image_root"]) != os.path.normpath(out["root"]):
                ctx.refuse("DataLoader.Eval.dataset.image_root", f"{ds['image_root']!r} differs from Train's "
                                                                 f"{out['root']!r}; kdjax reads both splits under "
                                                                 f"one data.root")
            for f in ("mean", "std", "image_size", "interpolation"):
                if ops[f] != out[f]:
                    ctx.refuse(f"{ops_path}", f"evaluates with {f}={ops[f]} but trains with {out[f]}; kdjax uses "
                                              f"one {f} for both")
            out.update(test_list=ds["cls_label_path"], eval_crop_ratio=ops["eval_crop_ratio"],
                       eval_batch_size=batch * cards)
            ctx.source("data.test_list", "DataLoader.Eval.dataset.cls_label_path")
            ctx.source("data.eval_crop_ratio", f"{ops_path} (CropImage.size / ResizeImage.resize_short)")
    ctx.source("data.augment", "DataLoader.Train.dataset.transform_ops")
    if cards != 1:
        ctx.note("DataLoader.Train.sampler.batch_size", f"per device in PaddleClas; kdjax's train.batch_size is the "
                                                         f"global batch: × {cards} cards (kdjax.cards)")
    else:
        ctx.note("DataLoader.Train.sampler.batch_size", "per device in PaddleClas, global in kdjax: the run matches a "
                                                         "1-card PaddleClas run (for N cards add -o kdjax.cards=N)")
    return out


def dataset_label(root: Optional[str]) -> str:
    return os.path.basename(os.path.normpath(root)) if root else "paddleclas_list"
