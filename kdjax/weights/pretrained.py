"""Exact import of pretrained teachers: PaddleClas `.pdparams` and PyTorch/torchvision `.pth` state dicts.

Neither framework is needed. A `.pdparams` is a pickle of `{name: numpy.ndarray}` (numpy 1.x files refer to
`numpy.core`, numpy 2.x files to `numpy._core`; both are accepted). A `.pth` (PyTorch >= 1.6 zip format) is
read with a restricted unpickler that rebuilds `torch._utils._rebuild_tensor_v2` tensors as numpy views of
the raw storages; the legacy pre-1.6 format needs torch itself, which is used when installed.

Mapping, from source names to our Flax trees (`kdjax.models.layers` keeps Flax's leaf names):
  * torchvision ResNet names are first rewritten to PaddleClas names (`layer2.0.downsample.0` ->
    `blocks.2.short.conv`), the zoo's modules being named after Paddle's state-dict keys;
  * a dotted name becomes a module path, each numeric index joined to the name before it
    (`blocks6.0.se.conv1` -> `blocks6_0/se/conv1`); CIFAR models are named after their PyTorch
    (RepDistiller) attributes, so the same rule applies to them;
  * leaves: conv `weight` -> `kernel` (OIHW -> HWIO; depthwise [C,1,k,k] -> [k,k,1,C]), linear `weight` ->
    `kernel` (Paddle [in,out] as is, PyTorch [out,in] transposed), BN `weight`/`bias` -> `scale`/`bias`,
    `_mean`/`running_mean` -> batch_stats `mean`, `_variance`/`running_var` -> batch_stats `var`;
    `num_batches_tracked` and Paddle's `StructuredToParameterName@@` are skipped.
Every model leaf must be filled and every checkpoint tensor used, with equal shapes; otherwise a
CheckpointError lists the first mismatches of each kind.

timm ViT / DeiT state dicts (source "timm", or any .pth whose keys are a timm VisionTransformer's) first get their
structure read from the checkpoint (kdjax/weights/timm.py), then map by the same rules; their top-level tensors
(`cls_token`, `dist_token`, `pos_embed`) keep their names.
"""

import os
import pickle
import re
import zipfile
from typing import Dict, Optional, Tuple

import jax
import numpy as np

from kdjax.errors import CheckpointError

SOURCES = ("paddle", "torchvision", "timm")  # timm: PyTorch .pth of a timm ViT/DeiT (weights/timm.py)
TORCHVISION_ARCHS = {f"resnet{d}": f"tv_resnet{d}" for d in (18, 34, 50, 101, 152)}
_SKIP_KEYS = ("StructuredToParameterName@@",)
_SKIP_SUFFIXES = ("num_batches_tracked",)
_SHOW = 8  # mismatches listed per kind


# ---------------------------------------------------------------------------------------------- readers

class _PaddleUnpickler(pickle.Unpickler):
    """Only numpy array reconstruction and plain containers; `numpy.core` and `numpy._core` both resolve."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(np.core.multiarray if not hasattr(np, "_core") else np._core.multiarray, name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "_codecs" and name == "encode":  # how pickle protocol 2 (older Paddle) stores bytes
            import codecs
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a .pdparams state dict")


def read_pdparams(path: str) -> Dict[str, np.ndarray]:
    with open(path, "rb") as f:
        obj = _PaddleUnpickler(f).load()
    return _state_dict_from(obj, path)


_TORCH_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}


def _storage_dtype(name):
    dtype = _TORCH_STORAGE_DTYPES[name]
    if dtype == "bfloat16":
        import ml_dtypes  # ships with jax
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *_):
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, f, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(f)
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *_: data
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return name  # a dtype marker, resolved in persistent_load
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a PyTorch state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        dtype = _storage_dtype(storage_type if isinstance(storage_type, str) else storage_type.__name__)
        raw = self.archive.read(f"{self.prefix}data/{key}")
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<" if self.byteorder == "little" else ">"))
        return arr.astype(dtype, copy=False)


def read_pth(path: str) -> Dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        return _read_pth_with_torch(path)
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pkl:
            raise CheckpointError(f"{path} is a zip file without data.pkl: not a PyTorch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        with archive.open(pkl[0]) as f:
            obj = _TorchUnpickler(f, archive, prefix, byteorder).load()
    return _state_dict_from(obj, path)


def _read_pth_with_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path} is a legacy (pre-1.6, non-zip) PyTorch file; reading it needs torch "
            f"(`pip install torch`), or re-save it with torch>=1.6: torch.save(torch.load(p), p)") from None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    obj = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in _unwrap(obj, path).items()}
    return _state_dict_from(obj, path)


def _unwrap(obj, path):
    """Training checkpoints nest the weights ({'model': ...} in RepDistiller/mdistiller, 'state_dict')."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return obj


def _state_dict_from(obj, path) -> Dict[str, np.ndarray]:
    out = {}
    state = _unwrap(obj, path)
    if state and all(k.startswith("module.") for k in state):  # saved from a DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    for name, value in state.items():
        if name in _SKIP_KEYS or name.endswith(_SKIP_SUFFIXES):
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        out[name] = value
    if not out:
        raise CheckpointError(f"{path} holds no tensors")
    return out


def detect_source(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pdparams":
        return "paddle"
    if ext in (".pth", ".pt", ".tar", ".bin") or zipfile.is_zipfile(path):
        return "torchvision"
    raise CheckpointError(f"cannot tell the format of {path!r} from its extension; pass source='paddle' or "
                          f"'torchvision' (CLI: --from)")


def read_state_dict(path: str, source: Optional[str] = None) -> Dict[str, np.ndarray]:
    """`{name: numpy array}` of a checkpoint file, without paddle or torch."""
    if not os.path.isfile(path):
        raise CheckpointError(f"pretrained weights file {path!r} does not exist"
                              + (" (it is a directory)" if os.path.isdir(path) else ""))
    source = source or detect_source(path)
    if source not in SOURCES:
        raise CheckpointError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    try:
        return read_pdparams(path) if source == "paddle" else read_pth(path)  # torchvision and timm: .pth
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as e:
        kind = "PaddleClas .pdparams" if source == "paddle" else "PyTorch .pth"
        raise CheckpointError(f"cannot read {path} as a {kind} file: {e}") from None


# ---------------------------------------------------------------------------------------------- mapping

def resolve_arch(arch: str, source: str) -> str:
    """torchvision's own names (`resnet50`) are accepted for `--from torchvision` and mean `tv_resnet50`."""
    return TORCHVISION_ARCHS.get(arch, arch) if source == "torchvision" else arch


def _torchvision_resnet_names(names) -> Dict[str, str]:
    """torchvision ResNet keys -> PaddleClas keys (flat block index over layer1..layer4)."""
    per_layer = {}
    for n in names:
        m = re.match(r"layer(\d+)\.(\d+)\.", n)
        if m:
            per_layer[int(m[1])] = max(per_layer.get(int(m[1]), 0), int(m[2]) + 1)
    offsets, total = {}, 0
    for layer in sorted(per_layer):
        offsets[layer], total = total, total + per_layer[layer]
    out = {}
    for n in names:
        new = re.sub(r"^conv1\.", "stem.0.conv.", n)
        new = re.sub(r"^bn1\.", "stem.0.bn.", new)
        m = re.match(r"layer(\d+)\.(\d+)\.(.*)$", new)
        if m:
            rest = m[3]
            rest = re.sub(r"^conv(\d)\.", lambda c: f"conv{int(c[1]) - 1}.conv.", rest)
            rest = re.sub(r"^bn(\d)\.", lambda c: f"conv{int(c[1]) - 1}.bn.", rest)
            rest = rest.replace("downsample.0.", "short.conv.").replace("downsample.1.", "short.bn.")
            new = f"blocks.{offsets[int(m[1])] + int(m[2])}.{rest}"
        out[n] = new
    return out


_LEAF = {"_mean": ("batch_stats", "mean"), "running_mean": ("batch_stats", "mean"),
         "_variance": ("batch_stats", "var"), "running_var": ("batch_stats", "var"),
         "bias": ("params", "bias")}


def _module_path(dotted: str) -> Tuple[str, ...]:
    """`blocks6.0.se.conv1` -> ('blocks6_0', 'se', 'conv1'); `features.2.conv.0.0` -> ('features_2', 'conv_0_0')."""
    out = []
    for part in dotted.split("."):
        if part.isdigit() and out:
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return tuple(out)


def _target(name: str, expected: Dict[Tuple[str, ...], tuple]) -> Optional[Tuple[str, ...]]:
    """The Flax variable path a checkpoint entry fills, or None."""
    module, _, leaf = name.rpartition(".")
    if not module and ("params", leaf) in expected:  # a top-level tensor (timm's cls_token, pos_embed)
        return ("params", leaf)
    path = _module_path(module)
    if leaf == "weight":
        for collection, flax_leaf in (("params", "kernel"), ("params", "scale")):
            if (collection, *path, flax_leaf) in expected:
                return (collection, *path, flax_leaf)
        return ("params", *path, "kernel")
    if leaf in _LEAF:
        return (_LEAF[leaf][0], *path, _LEAF[leaf][1])
    return None


def _convert(value: np.ndarray, target: Tuple[str, ...], source: str) -> np.ndarray:
    if target[-1] == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO (grouped: [O, I/g, kh, kw] -> [kh, kw, I/g, O])
    if target[-1] == "kernel" and value.ndim == 2 and source == "torchvision":
        return value.T  # torch Linear [out, in]; Paddle's is already [in, out]
    return value


def _fmt_path(path) -> str:
    return "/".join(path)


def _fmt_shape(shape) -> str:
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def _flatten(tree, prefix):
    """(path, leaf) pairs of a nested dict, so mismatch reports list params before batch_stats."""
    for key, value in tree.items():
        if hasattr(value, "items"):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def map_state_dict(state: Dict[str, np.ndarray], arch: str, source: str, abstract,
                   torchvision_resnet: bool = False, origin: str = "the checkpoint") -> dict:
    """Fill `abstract` (the model's variables as ShapeDtypeStructs) from `state`; CheckpointError on any mismatch.

    `torchvision_resnet`: translate torchvision ResNet names first (the target is a zoo `ResNet`).
    """
    flat = dict(_flatten(abstract.get("params", {}), ("params",)))
    flat.update(_flatten(abstract.get("batch_stats", {}), ("batch_stats",)))
    expected = {path: tuple(leaf.shape) for path, leaf in flat.items()}
    renamed = _torchvision_resnet_names(state) if torchvision_resnet else {n: n for n in state}

    filled, seen, unexpected, wrong_shape = {}, set(), [], []
    for name, value in state.items():
        target = _target(renamed[name], expected)
        if target is None or target not in expected or target in seen:
            unexpected.append(f"{name} {_fmt_shape(value.shape)}")
            continue
        seen.add(target)
        value = _convert(value, target, source)
        if tuple(value.shape) != expected[target]:
            wrong_shape.append(f"{name} {_fmt_shape(value.shape)} -> {_fmt_path(target)} "
                               f"{_fmt_shape(expected[target])}")
            continue
        filled[target] = np.asarray(value, dtype=flat[target].dtype)
    missing = [f"{_fmt_path(p)} {_fmt_shape(s)}" for p, s in expected.items() if p not in seen]
    if unexpected or missing or wrong_shape:
        lines = [f"{origin} does not fit arch {arch!r}: {len(filled)} of {len(expected)} model variables "
                 f"matched, from {len(state)} checkpoint tensors"]
        for title, items in (("shape mismatches (checkpoint name [shape] -> model variable [shape])", wrong_shape),
                             ("unexpected in the checkpoint (no model variable takes them)", unexpected),
                             ("missing from the checkpoint (model variables left empty)", missing)):
            if items:
                lines.append(f"  {title}, first {min(len(items), _SHOW)} of {len(items)}:")
                lines += [f"    {item}" for item in items[:_SHOW]]
        lines.append("  Check --arch and --from (torchvision ResNets are resnetN/tv_resnetN, PaddleClas' ResNetN), "
                     "num_classes and other model kwargs.")
        raise CheckpointError("\n".join(lines))

    tree: dict = {}
    for path, value in filled.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def infer_num_classes(state: Dict[str, np.ndarray]) -> Optional[int]:
    """Classes from the final classifier's bias (`fc`, `linear`, `classifier`), where there is one."""
    candidates = [n for n in state if re.fullmatch(r"(fc|linear|classifier)(\.\d+)?\.bias", n)]
    return int(state[candidates[-1]].shape[0]) if candidates else None


def abstract_variables(model, image_size: int = 64):
    """Variable shapes of `model`, traced without compute. A CNN's parameter shapes do not depend on the image
    size; a model that declares its input (`img_size`, `in_chans`: ViT's position embeddings) is traced at it."""
    size = getattr(model, "img_size", image_size)
    h, w = (size, size) if isinstance(size, int) else size
    x = jax.ShapeDtypeStruct((1, h, w, int(getattr(model, "in_chans", 3))), np.float32)
    return jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                             np.zeros(x.shape, x.dtype), train=False))


def import_pretrained(path: str, arch: str, source: Optional[str] = None, **kwargs) -> Tuple[dict, str, dict]:
    """(variables, registry arch, model kwargs incl. num_classes): what an export spec needs besides the weights."""
    from kdjax.models import get_model, list_models
    from kdjax.models.resnet import ResNet

    state = read_state_dict(path, source)
    source = source or detect_source(path)
    from kdjax.weights import timm

    if source == "timm" or (source == "torchvision" and timm.is_timm_vit(state)):
        return timm.import_timm(state, arch, dict(kwargs), origin=path)
    arch = resolve_arch(arch, source)
    if arch not in list_models():
        raise CheckpointError(f"unknown arch {arch!r} for {path}; known archs: {', '.join(list_models())}")
    if "num_classes" not in kwargs:
        n = infer_num_classes(state)
        if n is not None:
            kwargs["num_classes"] = n
    model = get_model(arch, field="arch", **kwargs)
    tv_resnet = source == "torchvision" and isinstance(model, ResNet)
    variables = map_state_dict(state, arch, source, abstract_variables(model), tv_resnet, origin=path)
    return variables, arch, kwargs


def load_pretrained(path: str, arch: str, *, source: Optional[str] = None, **kwargs) -> dict:
    """`{"params", "batch_stats"}` (numpy float32 trees) for zoo arch `arch` from a PaddleClas/PyTorch file.

    `source` is "paddle" or "torchvision" (default: from the file extension); `kwargs` go to the model
    constructor, `num_classes` defaulting to the checkpoint's classifier size. Raises CheckpointError for a
    missing/unreadable file or any parameter that does not fit `arch`.
    """
    return import_pretrained(path, arch, source, **kwargs)[0]
