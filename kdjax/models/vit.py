"""Vision Transformers: ViT (Dosovitskiy et al., ICLR 2021) and DeiT with its distillation token (Touvron et al.,
ICML 2021), with timm's `vision_transformer.py` / `deit.py` semantics so timm checkpoints import exactly.

Facts that matter for exact import (../shared/weights/README.md "timm ViT / DeiT"):
  * patch embedding = a p×p stride-p convolution with bias, flattened row-major over the (h, w) grid (computed here
    as one einsum: the same numbers as the convolution, cheaper on CPU);
  * tokens = [cls, dist (DeiT distilled only), patches], then `pos_embed` is added over all of them;
  * pre-norm blocks: x + proj(attn(norm1(x))), then x + fc2(gelu(fc1(norm2(x)))); LayerNorm eps 1e-6 (two-pass
    variance), exact erf GELU; qkv is one Dense(3D) whose output splits as [3, heads, head_dim]; attention
    logits scaled by head_dim**-0.5;
  * final `norm`, then `head` on token 0 (and `head_dist` on token 1).

A distilled DeiT returns the class head's logits in training (`train=True`, what the DeiT loss's base CE reads) and
the average of both heads at inference (`train=False`), as timm and DeiT do; eval, export and infer all use
`train=False`, so they score the average.

Recorded features (all [N, tokens, D] unless noted; token 0 = class, token 1 = distillation, then patches):
  stem         the tokens entering block 0 (patches with cls/dist prepended, pos_embed added)
  blocks[i]    residual stream after block i (before the final norm), i = 0 .. depth-1
  final_norm   all tokens after the final norm
  avg_pool     [N, D] the class head's input (the normed class token; timm's pre-logits), the zoo's fc-input name
  logits_cls   [N, classes] the class-token head (distilled models only)
  logits_dist  [N, classes] the distillation-token head (distilled models only): the DeiT loss distils it
  logits       [N, classes] what the model returns (see above)
The head names are those of timm's reference outputs (`logits_cls`, `logits_dist`).

Sizes are configurable: `img_size` (int or (H, W)), `patch_size`, `in_chans`, `num_classes`, `embed_dim`, `depth`,
`num_heads`, `mlp_ratio`, `distilled`, and timm's `drop_rate`, `attn_drop_rate`, `drop_path_rate` (stochastic depth,
linearly increasing over the blocks). E.g. a Fashion-MNIST DeiT: `ViT(img_size=28, patch_size=7, in_chans=1,
num_classes=10, embed_dim=64, depth=4, num_heads=4, distilled=True)`.
"""

from typing import Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.models.features import record
from kdjax.models.registry import ModelInputError, register_model

LN_EPS = 1e-6
_TRUNC = nn.initializers.truncated_normal(0.02)


def _hw(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def layer_norm(name: str) -> nn.LayerNorm:
    """timm's LayerNorm: eps 1e-6, variance as mean((x - mean)²) (flax's fast E[x²]-E[x]² loses digits)."""
    return nn.LayerNorm(epsilon=LN_EPS, use_fast_variance=False, name=name)


def dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=_TRUNC, bias_init=nn.initializers.zeros, name=name)


class PatchProj(nn.Module):
    """The p×p, stride-p convolution of timm's PatchEmbed (HWIO `kernel`, `bias`), as one einsum over patches."""

    embed_dim: int
    patch: Tuple[int, int]

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        ph, pw = self.patch
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (ph, pw, c, self.embed_dim))
        bias = self.param("bias", nn.initializers.zeros, (self.embed_dim,))
        x = x.reshape(n, h // ph, ph, w // pw, pw, c)
        y = jnp.einsum("nhpwqc,pqcd->nhwd", x, kernel.astype(x.dtype)) + bias.astype(x.dtype)
        return y.reshape(n, (h // ph) * (w // pw), self.embed_dim)


class PatchEmbed(nn.Module):
    embed_dim: int
    patch: Tuple[int, int]

    @nn.compact
    def __call__(self, x):
        return PatchProj(self.embed_dim, self.patch, name="proj")(x)


def drop_path(module: nn.Module, x, rate: float, train: bool):
    """Stochastic depth (timm DropPath): drop a sample's whole branch with probability `rate`, scale kept ones."""
    if not train or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class Attention(nn.Module):
    num_heads: int
    attn_drop: float = 0.0
    proj_drop: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        n, t, d = x.shape
        heads = self.num_heads
        hd = d // heads
        qkv = dense(3 * d, "qkv")(x).reshape(n, t, 3, heads, hd)  # timm's [3, heads, head_dim] split
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("nqhd,nkhd->nhqk", q * (hd ** -0.5), k)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        attn = nn.Dropout(self.attn_drop, deterministic=not train)(attn)
        out = jnp.einsum("nhqk,nkhd->nqhd", attn, v).reshape(n, t, d)
        out = dense(d, "proj")(out)
        return nn.Dropout(self.proj_drop, deterministic=not train)(out)


class Mlp(nn.Module):
    hidden: int
    drop: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        d = x.shape[-1]
        x = jax.nn.gelu(dense(self.hidden, "fc1")(x), approximate=False)
        x = nn.Dropout(self.drop, deterministic=not train)(x)
        x = dense(d, "fc2")(x)
        return nn.Dropout(self.drop, deterministic=not train)(x)


class Block(nn.Module):
    num_heads: int
    mlp_hidden: int
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = Attention(self.num_heads, self.attn_drop, self.drop, name="attn")(layer_norm("norm1")(x), train)
        x = x + drop_path(self, y, self.drop_path, train)
        y = Mlp(self.mlp_hidden, self.drop, name="mlp")(layer_norm("norm2")(x), train)
        return x + drop_path(self, y, self.drop_path, train)


class ViT(nn.Module):
    """timm VisionTransformer (class-token pooling) / VisionTransformerDistilled (`distilled=True`)."""

    img_size: Union[int, Sequence[int]] = 224
    patch_size: Union[int, Sequence[int]] = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    distilled: bool = False
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    @property
    def grid(self) -> Tuple[int, int]:
        (h, w), (ph, pw) = _hw(self.img_size), _hw(self.patch_size)
        return h // ph, w // pw

    @property
    def num_prefix_tokens(self) -> int:
        return 2 if self.distilled else 1

    @property
    def num_tokens(self) -> int:
        gh, gw = self.grid
        return gh * gw + self.num_prefix_tokens

    def _check(self, x):
        (h, w), (ph, pw) = _hw(self.img_size), _hw(self.patch_size)
        if h % ph or w % pw:
            raise ModelInputError(f"ViT: img_size {h}x{w} is not a multiple of patch_size {ph}x{pw}; change the "
                             "model kwargs img_size / patch_size")
        if self.embed_dim % self.num_heads:
            raise ModelInputError(f"ViT: embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if tuple(x.shape[1:]) != (h, w, self.in_chans):
            raise ModelInputError(f"ViT built for {h}x{w}x{self.in_chans} inputs (kwargs img_size={self.img_size}, "
                             f"in_chans={self.in_chans}) got images of shape {tuple(x.shape[1:])} (NHWC); set the "
                             "model's kwargs img_size / in_chans to the data's image size and channels")

    @nn.compact
    def __call__(self, x, train: bool = False):
        self._check(x)
        d = self.embed_dim
        n = x.shape[0]
        tokens = PatchEmbed(d, _hw(self.patch_size), name="patch_embed")(x)
        prefix = [self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, d))]
        if self.distilled:
            prefix.append(self.param("dist_token", _TRUNC, (1, 1, d)))
        prefix = [jnp.broadcast_to(p.astype(tokens.dtype), (n, 1, d)) for p in prefix]
        pos = self.param("pos_embed", _TRUNC, (1, self.num_tokens, d))
        x = jnp.concatenate(prefix + [tokens], axis=1) + pos.astype(tokens.dtype)
        x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
        record(self, "stem", x)
        hidden = int(d * self.mlp_ratio)
        for i in range(self.depth):
            rate = self.drop_path_rate * i / (self.depth - 1) if self.depth > 1 else 0.0  # timm's linspace
            x = Block(self.num_heads, hidden, self.drop_rate, self.attn_drop_rate, rate, name=f"blocks_{i}")(x, train)
            record(self, f"blocks[{i}]", x)
        x = layer_norm("norm")(x)
        record(self, "final_norm", x)
        record(self, "avg_pool", x[:, 0])
        if not self.distilled:
            pooled = nn.Dropout(self.drop_rate, deterministic=not train)(x[:, 0])  # timm's head_drop
            logits = dense(self.num_classes, "head")(pooled)
            record(self, "logits", logits)
            return logits
        cls_logits = dense(self.num_classes, "head")(x[:, 0])
        dist_logits = dense(self.num_classes, "head_dist")(x[:, 1])
        record(self, "logits_cls", cls_logits)
        record(self, "logits_dist", dist_logits)
        logits = cls_logits if train else (cls_logits + dist_logits) / 2
        record(self, "logits", logits)
        return logits


# (embed_dim, num_heads) of timm's sizes; depth 12, MLP ratio 4, patch 16, 224x224 for all of them
SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}


def _register(name: str, size: str, distilled: bool):
    dim, heads = SIZES[size]

    def build(num_classes: int = 1000, **kwargs):
        kwargs.setdefault("embed_dim", dim)
        kwargs.setdefault("num_heads", heads)
        kwargs.setdefault("depth", 12)
        kwargs.setdefault("patch_size", 16)
        kwargs.setdefault("img_size", 224)
        return ViT(num_classes=num_classes, distilled=distilled, **kwargs)

    build.__doc__ = (f"timm {name}: ViT-{size[0].upper()}/16 (embed {dim}, 12 blocks, {heads} heads)"
                     + (", with DeiT's distillation token and head" if distilled else ""))
    register_model(name)(build)


for _size in SIZES:
    _register(f"vit_{_size}_patch16_224", _size, False)
    _register(f"deit_{_size}_patch16_224", _size, False)  # DeiT without distillation: timm's ViT at these sizes
    _register(f"deit_{_size}_distilled_patch16_224", _size, True)


@register_model("ViT")
def vit(**kwargs):
    """Any ViT / DeiT: every size is a kwarg (defaults: ViT-Ti/16 at 224, 1000 classes, no distillation token)."""
    return ViT(**kwargs)
