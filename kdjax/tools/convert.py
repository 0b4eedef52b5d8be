"""Convert a PaddleClas or torchvision checkpoint into a kdjax export directory (usable as a teacher `init`).

    python -m kdjax.tools.convert --from paddle --arch ResNet50_vd ResNet50_vd_pretrained.pdparams --out teachers/r50vd
    python -m kdjax.tools.convert --from torchvision --arch resnet34 resnet34-b627a593.pth --out teachers/r34

    python -m kdjax.tools.convert --from torchvision --arch resnet32x4 ckpt_epoch_240.pth --out teachers/r32x4 \
        --input-size 32 --mean 0.5071,0.4865,0.4409 --std 0.2673,0.2564,0.2762

`--from torchvision` reads any PyTorch state dict (also nested under 'model'/'state_dict', as RepDistiller
and mdistiller save them); torchvision ResNet names are translated, CIFAR-zoo names map as they are.
The export holds the variables and a spec: arch (torchvision names become `tv_resnet*`), model kwargs,
num_classes (read from the weights), input size (224x224x3 by default) and mean/std for images scaled to
[0, 1] (ImageNet's by default). Every parameter is checked; a wrong --arch prints the mismatched names and
exits with status 2.
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


def convert(src: str, out: str, arch: str, source: str, kwargs: Optional[dict] = None,
            input_size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """Write the export directory `out` from checkpoint `src`; returns the spec written."""
    variables, registry_arch, model_kwargs = import_pretrained(src, arch, source, **dict(kwargs or {}))
    model_kwargs = dict(model_kwargs)
    num_classes = model_kwargs.pop("num_classes", None)
    if num_classes is None:  # no classifier bias in the file: the arch's default
        num_classes = get_model(registry_arch, **model_kwargs).num_classes
    spec = make_spec(registry_arch, model_kwargs, num_classes, (input_size, input_size, 3),
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
    p.add_argument("--input-size", type=int, default=224, help="input height = width recorded in the spec")
    p.add_argument("--mean", type=_floats, default=IMAGENET_MEAN, help="per-channel mean for [0,1] images, "
                   "comma-separated (default ImageNet's; CIFAR-100: 0.5071,0.4865,0.4409)")
    p.add_argument("--std", type=_floats, default=IMAGENET_STD, help="per-channel std, comma-separated "
                   "(default ImageNet's; CIFAR-100: 0.2673,0.2564,0.2762)")
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
