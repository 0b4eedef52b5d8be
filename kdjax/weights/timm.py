"""timm ViT / DeiT state dicts (`vit_*`, `deit_*`, also DeiT's own `{'model': ...}` checkpoints) → zoo `ViT` kwargs.

The structure is read from the checkpoint, not assumed from the arch name: embedding width (`cls_token`), depth
(`blocks.<i>.*`), patch size and input channels (`patch_embed.proj.weight` [D, C, p, p]), token count
(`pos_embed` [1, T, D]; T - 1 - distilled patches on a square grid gives img_size), the distillation token
(`dist_token` together with `head_dist`), MLP width (`blocks.0.mlp.fc1.weight`) and classes (`head.weight`).
The number of heads is the one fact a state dict does not hold: it comes from the arch (or `num_heads=`; the
generic arch `ViT` defaults to embed_dim / 64, timm's head width for every standard size).

A named arch (`deit_tiny_distilled_patch16_224`, ...) must have the checkpoint's structure; its input size,
channels and classes follow the checkpoint. Arch `ViT` takes the whole structure from the checkpoint. Position
embeddings are not resampled: a model configured for another input size is refused.

Names then map like any PyTorch state dict (`kdjax.weights.pretrained.map_state_dict`): Linear [out, in] weights
are transposed, the patch convolution goes OIHW → HWIO, LayerNorm weight → scale, and the top-level tensors
(`cls_token`, `dist_token`, `pos_embed`) keep their names.
"""

import math
import re
from typing import Dict, Tuple

import numpy as np

from kdjax.errors import CheckpointError

GENERIC_ARCH = "ViT"
_STRUCTURE = ("embed_dim", "depth", "distilled", "patch_size", "mlp_ratio")


def is_timm_vit(state: Dict[str, np.ndarray]) -> bool:
    """Whether a PyTorch state dict is a timm VisionTransformer (distilled or not)."""
    return "cls_token" in state and "patch_embed.proj.weight" in state and "pos_embed" in state


def checkpoint_facts(state: Dict[str, np.ndarray], origin: str = "the checkpoint", img_size=None) -> dict:
    """The ViT kwargs a timm state dict determines (everything but num_heads). `img_size` (H, W): the input of a
    checkpoint whose patch grid is not square (its token count alone does not say H and W)."""
    if not is_timm_vit(state):
        raise CheckpointError(f"{origin} is not a timm ViT/DeiT state dict (needs cls_token, pos_embed and "
                              f"patch_embed.proj.weight; it has {sorted(state)[:6]}...)")
    dim = int(state["cls_token"].shape[-1])
    proj = state["patch_embed.proj.weight"]
    if proj.ndim != 4:
        raise CheckpointError(f"{origin}: patch_embed.proj.weight has shape {list(proj.shape)}, expected [D, C, p, p]")
    ph, pw = int(proj.shape[2]), int(proj.shape[3])
    distilled = "dist_token" in state
    if distilled != ("head_dist.weight" in state):
        have = "dist_token but no head_dist" if distilled else "head_dist but no dist_token"
        raise CheckpointError(f"{origin} has {have}: not a DeiT distilled model kdjax can build")
    if "head.weight" not in state:
        raise CheckpointError(f"{origin} has no classifier (head.weight): a timm model saved with num_classes=0 "
                              "cannot serve as a teacher; use a checkpoint with its head")
    depth = 1 + max((int(m[1]) for n in state for m in [re.match(r"blocks\.(\d+)\.", n)] if m), default=-1)
    if depth == 0:
        raise CheckpointError(f"{origin} holds no transformer blocks (blocks.<i>.*)")
    tokens = int(state["pos_embed"].shape[1])
    patches = tokens - 1 - int(distilled)
    side = int(math.isqrt(max(patches, 0)))
    if img_size is not None and not isinstance(img_size, int):
        h, w = (int(v) for v in img_size)
        if (h // ph) * (w // pw) != patches:
            raise CheckpointError(f"{origin}: pos_embed covers {patches} patches, not the {(h // ph) * (w // pw)} "
                                  f"of img_size={tuple(img_size)} with {ph}x{pw} patches")
        image = (h, w)
    elif side * side == patches:
        image = side * ph if ph == pw else (side * ph, side * pw)
    else:
        raise CheckpointError(f"{origin}: pos_embed covers {tokens} tokens, i.e. {patches} patches, not a square "
                              "grid; give img_size=(H, W) in the model kwargs")
    hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    return dict(embed_dim=dim, depth=depth, distilled=distilled, patch_size=ph if ph == pw else (ph, pw),
                in_chans=int(proj.shape[1]), img_size=image, num_classes=int(state["head.weight"].shape[0]),
                mlp_ratio=hidden / dim)


def _same(a, b) -> bool:
    norm = (lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v, v) if isinstance(v, int) and not
            isinstance(v, bool) else v)
    return norm(a) == norm(b)


def resolve_kwargs(state: Dict[str, np.ndarray], arch: str, kwargs: dict, origin: str) -> dict:
    """Model kwargs for `arch` that fit the checkpoint; CheckpointError naming what differs."""
    from kdjax.models import get_model

    facts = checkpoint_facts(state, origin, kwargs.get("img_size"))
    for key, value in kwargs.items():
        if key in facts and not _same(value, facts[key]):
            extra = (" (kdjax does not resample position embeddings to another input size)"
                     if key in ("img_size", "patch_size") else "")
            raise CheckpointError(f"{origin} holds a ViT with {key}={facts[key]!r} but the model is configured with "
                                  f"{key}={value!r}{extra}; drop that kwarg or use a matching checkpoint")
    out = dict(kwargs)
    variable = ("img_size", "in_chans", "num_classes")
    if arch == GENERIC_ARCH:
        out.update({k: v for k, v in facts.items() if k not in out})
        out.setdefault("num_heads", max(1, facts["embed_dim"] // 64))
        return out
    out.update({k: facts[k] for k in variable if k not in out})
    try:
        model = get_model(arch, field="arch", **out)
    except Exception as e:
        raise CheckpointError(f"cannot build arch {arch!r} for {origin}: {e}") from None
    differ = [k for k in _STRUCTURE if not _same(getattr(model, k, None), facts[k])]
    if differ:
        theirs = ", ".join(f"{k}={facts[k]!r}" for k in _STRUCTURE)
        ours = ", ".join(f"{k}={getattr(model, k, None)!r}" for k in _STRUCTURE)
        raise CheckpointError(f"{origin} does not fit arch {arch!r}: the checkpoint has {theirs}; {arch} has {ours}. "
                              f"Use the matching arch name, or arch '{GENERIC_ARCH}' to take the structure from the "
                              "checkpoint")
    return out


def import_timm(state: Dict[str, np.ndarray], arch: str, kwargs: dict, origin: str) -> Tuple[dict, str, dict]:
    """(variables, arch, kwargs) for a timm ViT/DeiT state dict; every tensor used, every variable filled."""
    from kdjax.models import get_model
    from kdjax.models.vit import ViT
    from kdjax.weights.pretrained import abstract_variables, map_state_dict

    kwargs = resolve_kwargs(state, arch, dict(kwargs), origin)
    model = get_model(arch, field="arch", **kwargs)
    if not isinstance(model, ViT):
        raise CheckpointError(f"{origin} is a timm ViT/DeiT checkpoint but arch {arch!r} is not a ViT; use "
                              f"e.g. deit_tiny_distilled_patch16_224, vit_tiny_patch16_224 or {GENERIC_ARCH}")
    variables = map_state_dict(state, arch, "torchvision", abstract_variables(model), origin=origin)
    return variables, arch, kwargs
