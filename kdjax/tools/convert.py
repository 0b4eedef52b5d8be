"""Convert a PaddleClas or torchvision checkpoint into a kdjax export directory (usable as a teacher `init`).

    python -m kdjax.tools.convert --from paddle --arch ResNet50_vd ResNet50_vd_pretrained.pdparams --out teachers/r50vd
    python -m kdjax.tools.convert --from torchvision --arch resnet34 resnet34-b627a593.pth --out teachers/r34

    python -m kdjax.tools.convert --from torchvision --arch resnet32x4 ckpt_epoch_240.pth --out teachers/r32x4 \
        --input-size 32 --mean 0.5071,0.4865,0.4409 --std 0.2673,0.2564,0.2762

    python -m kdjax.tools.convert --from timm --arch deit_tiny_distilled_patch16_224 deit_tiny_distilled.pth \
        --out teachers/deit_ti

`--from torchvision` reads any PyTorch state dict (also nested under 'model'/'state_dict', as RepDistiller
and mdistiller save them); torchvision ResNet names are translated, CIFAR-zoo names map as they are.
The export holds the variables and a spec: arch (torchvision names become `tv_resnet*`), model kwargs,
num_classes (read from the weights), input size (224x224x3 by default) and mean/std for images scaled to
[0, 1] (ImageNet's by default). Every parameter is checked; a wrong --arch prints the mismatched names and
exits with status 2.

`--from timm` reads a timm ViT/DeiT state dict (also DeiT's own checkpoints, nested under 'model'); its
depth, width, tokens and distillation token come from the file (kdjax/weights/timm.py), and so do the input
size and channels recorded in the spec. timm's `vit_*` ImageNet weights normalise with mean = std = 0.5 (its
`pretrained_cfg`), DeiT's with ImageNet's: those are the defaults for those arch names.
"""

import argparse
import hashlib
import json
import os
import sys
from typing import Optional, Sequence

from kdjax.weights.export_dir import make_spec, save_export
from kdjax.models import get_model
from kdjax.weights.pretrained import SOURCES, import_pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


TIMM_VIT_MEAN = TIMM_VIT_STD = (0.5, 0.5, 0.5)


def convert(src: str, out: str, arch: str, source: str, kwargs: Optional[dict] = None,
            input_size: Optional[int] = None, mean=None, std=None) -> dict:
    """Write the export directory `out` from checkpoint `src`; returns the spec written.

    input_size / mean / std: None means the model's own input size where it has one (ViT), else 224, and
    ImageNet's statistics (0.5 for timm `vit_*` archs)."""
    variables, registry_arch, model_kwargs = import_pretrained(src, arch, source, **dict(kwargs or {}))
    model_kwargs = dict(model_kwargs)
    num_classes = model_kwargs.pop("num_classes", None)
    model = get_model(registry_arch, **model_kwargs)
    if num_classes is None:  # no classifier bias in the file: the arch's default
        num_classes = model.num_classes
    vit_stats = registry_arch.startswith("vit_") and hasattr(model, "img_size")  # timm's Google ViT weights
    mean = tuple(mean) if mean is not None else (TIMM_VIT_MEAN if vit_stats else IMAGENET_MEAN)
    std = tuple(std) if std is not None else (TIMM_VIT_STD if vit_stats else IMAGENET_STD)
    shape = (input_size or 224, input_size or 224, 3)
    if hasattr(model, "img_size"):  # the model fixes its input (position embeddings): record that
        own = model.img_size if not isinstance(model.img_size, int) else (model.img_size, model.img_size)
        if input_size is not None and tuple(own) != (input_size, input_size):
            from kdjax.errors import CheckpointError

            raise CheckpointError(f"--input-size {input_size} does not fit {registry_arch}: its position embeddings "
                                  f"are for {own[0]}x{own[1]} inputs; leave --input-size out")
        shape = (int(own[0]), int(own[1]), int(getattr(model, "in_chans", 3)))
    spec = make_spec(registry_arch, model_kwargs, num_classes, shape,
                     mean=mean, std=std, label_names=None, pixel_range=[0.0, 1.0],
                     source={"framework": source, "file": os.path.abspath(src), "sha256": _sha256(src),
                             "arch": arch})
    save_export(out, variables, spec)
    return spec


def _floats(text: str):
    values = [float(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, got {text!r}")
    return values


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kdjax.tools.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="checkpoint file (.pdparams or .pth)")
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="checkpoint framework")
    p.add_argument("--arch", required=True, help="zoo arch name (torchvision: resnet18 ... or tv_resnet18 ...)")
    p.add_argument("--out", required=True, help="export directory to write")
    p.add_argument("--kwargs", default="{}", help='model constructor kwargs as JSON, e.g. \'{"num_classes": 100}\'')
    p.add_argument("--input-size", type=int, default=None, help="input height = width recorded in the spec "
                   "(default 224; a ViT's own size, read from its checkpoint)")
    p.add_argument("--mean", type=_floats, default=None, help="per-channel mean for [0,1] images, "
                   "comma-separated (default ImageNet's, timm vit_*: 0.5,0.5,0.5; CIFAR-100: 0.5071,0.4865,0.4409)")
    p.add_argument("--std", type=_floats, default=None, help="per-channel std, comma-separated "
                   "(default ImageNet's, timm vit_*: 0.5,0.5,0.5; CIFAR-100: 0.2673,0.2564,0.2762)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        kwargs = json.loads(args.kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        from kdjax.cli.run import fail

        fail("kdjax.tools.convert", f"--kwargs must be a JSON object ({e})")
    from kdjax.cli.run import guarded

    spec = guarded(convert, args.src, args.out, args.arch, args.source, kwargs, args.input_size, args.mean, args.std,
                   prog="kdjax.tools.convert")
    print(f"wrote {os.path.abspath(args.out)}: arch {spec['arch']}, {spec['num_classes']} classes, "
          f"input {spec['input_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
