"""CRD (Tian et al., ICLR 2020, "Contrastive Representation Distillation"), as RepDistiller's CRDLoss.

Learnable parameters (training state, never exported): embedding heads v = normalize(W·flatten(f) + b) on the
student and teacher features (penultimate ones, e.g. `avg_pool`), both trainable (the teacher's features are
detached). Non-gradient state (`CombinedLoss.init_state`, kept in `TrainState.loss_state` and checkpointed):
two memory banks of N_data × feat_dim (one per side; rows start uniform in ±1/√(feat_dim/3)) and the NCE
normalisation constants Z_s, Z_t (−1 until set from the first batch: Z = mean(exp(·/τ)) · N_data, then fixed).

Per example i (its dataset index) with K negatives j ~ U{0..N_data−1} (ContrastMemory's own uniform sampler;
RepDistiller's CIFAR loader can draw them from other classes instead), and the positive j₀ = i:

    P_s(j) = exp(<v_s,i, M_t[j]>/τ) / Z_s        P_t(j) = exp(<v_t,i, M_s[j]>/τ) / Z_t      (memories detached)
    NCE(P) = −1/B Σ_i [log(P(j₀) / (P(j₀) + K/N + ε)) + Σ_j log((K/N) / (P(j) + K/N + ε))],   ε = 1e-7
    L = NCE(P_s) + NCE(P_t)

and the memory rows of the batch move towards the new embeddings: M[i] ← normalize(m·M[i] + (1 − m)·v_i)
(m = nce_m = 0.5), after the scores were read. τ = nce_t = 0.07, feat_dim = 128, K = nce_k (16384 in the paper).
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.losses.heads import TORCH_DEFAULT_KERNEL, torch_uniform_bias
from kdjax.losses.registry import LossSpec, positive, positive_int, register_loss, unit_interval
from kdjax.losses.numerics import F32, f32, l2_normalize

HIGHEST = jax.lax.Precision.HIGHEST
NCE_EPS = 1e-7


def _flat(x):
    x = f32(x)
    return x.reshape(x.shape[0], -1)


class Embed(nn.Module):
    """RepDistiller's Embed: Linear (torch default init) then x / ‖x‖₂."""

    feat_dim: int

    @nn.compact
    def __call__(self, x):
        x = _flat(x)
        x = nn.Dense(self.feat_dim, kernel_init=TORCH_DEFAULT_KERNEL, bias_init=torch_uniform_bias(x.shape[-1]),
                     precision=HIGHEST, param_dtype=F32, dtype=F32, name="linear")(x)
        return l2_normalize(x, 1)


class CRDHeads(nn.Module):
    feat_dim: int

    @nn.compact
    def __call__(self, s_feat, t_feat):
        return Embed(self.feat_dim, name="embed_s")(s_feat), Embed(self.feat_dim, name="embed_t")(t_feat)


def crd_init(rng, s_feat, t_feat, feat_dim: int = 128) -> dict:
    zeros = lambda f: jnp.zeros(f.shape, F32)  # noqa: E731
    return CRDHeads(int(feat_dim)).init(rng, zeros(s_feat), zeros(t_feat))["params"]


def crd_state_init(rng, num_data: int, feat_dim: int = 128) -> dict:
    """Memory banks ("memory_s": student embeddings, "memory_t": teacher's) and the unset constants Z (−1)."""
    if int(num_data) < 2:
        raise ValueError(f"CRD needs the training set size (num_data >= 2), got {num_data}")
    stdv = 1.0 / (feat_dim / 3.0) ** 0.5
    k_s, k_t = jax.random.split(rng)
    bank = lambda k: jax.random.uniform(k, (int(num_data), int(feat_dim)), F32, -stdv, stdv)  # noqa: E731
    return {"memory_s": bank(k_s), "memory_t": bank(k_t), "z_s": jnp.full((), -1.0, F32),
            "z_t": jnp.full((), -1.0, F32)}


def sample_contrast_indices(rng, indices, num_data: int, nce_k: int):
    """[B, K+1]: the example's own index first (the positive), then K uniform draws from the dataset."""
    indices = jnp.asarray(indices).astype(jnp.int32).reshape(-1)
    neg = jax.random.randint(rng, (indices.shape[0], int(nce_k)), 0, int(num_data), jnp.int32)
    return jnp.concatenate([indices[:, None], neg], axis=1)


def nce_loss(p, num_data: int):
    """RepDistiller's ContrastLoss on [B, K+1] scores P (column 0: the positive)."""
    b, k = p.shape[0], p.shape[1] - 1
    mpn = k / float(num_data)
    log_d1 = jnp.log(p[:, 0] / (p[:, 0] + mpn + NCE_EPS))
    log_d0 = jnp.log(mpn / (p[:, 1:] + mpn + NCE_EPS))
    return -(jnp.sum(log_d1) + jnp.sum(log_d0)) / b


def _update_rows(memory, indices, v, momentum: float):
    rows = memory[indices] * momentum + v * (1.0 - momentum)
    rows = rows / jnp.sqrt(jnp.sum(rows * rows, axis=1, keepdims=True))
    return memory.at[indices].set(rows)


def crd_loss(params, state, s_feat, t_feat, indices, *, rng=None, contrast_idx=None, nce_k: int = 16384,
             nce_t: float = 0.07, nce_m: float = 0.5) -> Tuple[jax.Array, dict]:
    """(loss, new state). `indices` [B]: dataset indices of the batch; `contrast_idx` [B, K+1] replaces the
    negative sampling (a reference draw); else `rng` draws K = nce_k negatives per example."""
    mem_s, mem_t = jnp.asarray(state["memory_s"]), jnp.asarray(state["memory_t"])
    n = mem_s.shape[0]
    indices = jnp.asarray(indices).astype(jnp.int32).reshape(-1)
    feat_dim = mem_s.shape[1]
    v_s, v_t = CRDHeads(int(feat_dim)).apply({"params": params}, s_feat, jax.lax.stop_gradient(f32(t_feat)))
    if contrast_idx is None:
        if rng is None:
            raise ValueError("crd_loss needs rng (or contrast_idx) to draw its negatives")
        contrast_idx = sample_contrast_indices(rng, indices, n, nce_k)
    contrast_idx = jnp.asarray(contrast_idx).astype(jnp.int32)
    w_t = jax.lax.stop_gradient(mem_t[contrast_idx])  # [B, K+1, D]
    w_s = jax.lax.stop_gradient(mem_s[contrast_idx])
    out_s = jnp.exp(jnp.einsum("bkd,bd->bk", w_t, v_s, precision=HIGHEST) / nce_t)
    out_t = jnp.exp(jnp.einsum("bkd,bd->bk", w_s, v_t, precision=HIGHEST) / nce_t)
    z_s = jnp.where(state["z_s"] < 0, jax.lax.stop_gradient(jnp.mean(out_s)) * n, state["z_s"])
    z_t = jnp.where(state["z_t"] < 0, jax.lax.stop_gradient(jnp.mean(out_t)) * n, state["z_t"])
    loss = nce_loss(out_s / z_s, n) + nce_loss(out_t / z_t, n)
    new_state = {"memory_s": _update_rows(mem_s, indices, jax.lax.stop_gradient(v_s), nce_m),
                 "memory_t": _update_rows(mem_t, indices, jax.lax.stop_gradient(v_t), nce_m),
                 "z_s": z_s, "z_t": z_t}
    return loss, new_state


def _shapes(e, s, t):
    if len(s) < 2 or len(t) < 2:
        return f"needs [N, D] features (or maps, flattened per sample), got student {list(s)} and teacher {list(t)}"
    return None


def _compute(e, a, b, ctx):
    if ctx.indices is None:
        raise ValueError(f"losses[{e.index}] (crd) needs the dataset index of every example: pass indices= "
                         "(the training pipeline adds batch['index'] when a loss needs it)")
    p = e.params
    value, state = crd_loss(ctx.params, ctx.state, a[e.s_key], b[e.t_key], ctx.indices, rng=ctx.rng,
                            nce_k=p["nce_k"], nce_t=p["nce_t"], nce_m=p["nce_m"])
    return (value,), state


register_loss(LossSpec(
    "crd", "contrastive representation distillation with memory banks", "CRD: Tian et al., ICLR 2020", "pairs",
    "unused", dict(feat_dim=128, nce_k=16384, nce_t=0.07, nce_m=0.5), _compute,
    checks=dict(feat_dim=positive_int, nce_k=positive_int, nce_t=positive, nce_m=unit_interval), shape_check=_shapes,
    learnable=True, init=lambda e, a, b, rng: crd_init(rng, a[e.s_key], b[e.t_key], e.params["feat_dim"]),
    state_init=lambda e, num_data, rng: crd_state_init(rng, num_data, e.params["feat_dim"]),
    needs_index=True, needs_rng=True,
    # the normalisation constants are set from the first batch, and the memory rows a batch updates are read by
    # the next micro-batch's negatives: splitting a batch changes the result
    separable=False))
