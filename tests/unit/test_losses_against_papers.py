"""FitNet, AT, logit standardization (KD/DKD), SKD, PEFD, CRD, multi-teacher KD and soft-label CE.

Each loss is checked against an independent numpy computation of its paper's / reference's formula (written
here from the equations, not by calling kdjax), on small arrays. tests/e2e/test_method_runs.py trains them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config

import kdjax.losses as L
from kdjax.losses import at, crd, fitnet

RNG = np.random.default_rng(0)
NEW_CONFIGS = ["fitnet", "at", "kd_ls", "dkd_ls", "skd", "pefd", "crd", "multi_teacher"]


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# --- numpy references ----------------------------------------------------------------------------------

def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_softmax(z):
    return np.exp(np_log_softmax(z))


def np_kl(p, q):
    """Σ p log(p/q) over the last axis."""
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def np_zscore(z):
    """Sun et al.: (z − mean) / (std + 1e-7), std with n−1 (torch.std)."""
    return (z - z.mean(-1, keepdims=True)) / (z.std(-1, ddof=1, keepdims=True) + 1e-7)


def np_kd(s, t, temp):
    """Hinton KD: T² · mean_n KL(softmax(t/T) ‖ softmax(s/T))."""
    return temp ** 2 * np.mean(np_kl(np_softmax(t / temp), np_softmax(s / temp)))


def np_dkd(s, t, y, temp, alpha, beta):
    """Zhao et al.: T² · mean_n [α KL(b_t ‖ b_s) + β KL(p̂_t ‖ p̂_s)], b = (p_gt, 1 − p_gt), p̂ over non-targets."""
    out = []
    for zs, zt, g in zip(s, t, y):
        ps, pt = np_softmax(zs / temp), np_softmax(zt / temp)
        bs, bt = np.array([ps[g], 1 - ps[g]]), np.array([pt[g], 1 - pt[g]])
        keep = np.arange(len(zs)) != g
        hs, ht = np_softmax(zs[keep] / temp), np_softmax(zt[keep] / temp)
        out.append(alpha * np_kl(bt, bs) + beta * np_kl(ht, hs))
    return temp ** 2 * np.mean(out)


def np_conv_valid(x, w, b):
    """Cross-correlation, NHWC input, HWIO kernel, valid padding."""
    kh, kw = w.shape[:2]
    n, h, wd, _ = x.shape
    out = np.zeros((n, h - kh + 1, wd - kw + 1, w.shape[-1]))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = np.einsum("nhwc,hwco->no", x[:, i:i + kh, j:j + kw], w)
    return out + b


def np_attention(f):
    """AT map: Σ_c A_c² over the channels, flattened, divided by its L2 norm."""
    a = (f ** 2).sum(-1).reshape(len(f), -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# --- FitNet ---------------------------------------------------------------------------------------------

def _feats(*shape):
    return np.maximum(RNG.normal(size=shape), 0).astype(np.float32)  # post-ReLU maps


@pytest.mark.parametrize("s_hw,t_hw", [(5, 5), (6, 4)])
def test_fitnet_matches_paper_regressor(s_hw, t_hw):
    """L = mean((ReLU(conv_r(v_s)) − u_t)²), kernel (H_s − H_t + 1)² (1×1 for equal sizes), valid padding."""
    s, t = _feats(3, s_hw, s_hw, 4), _feats(3, t_hw, t_hw, 6)
    k = s_hw - t_hw + 1
    w = RNG.normal(size=(k, k, 4, 6)).astype(np.float32) * 0.3
    b = RNG.normal(size=6).astype(np.float32) * 0.1
    params = {"conv": {"kernel": w, "bias": b}}
    want = np.mean((np.maximum(np_conv_valid(s, w, b), 0) - t) ** 2)
    close(fitnet.fitnet_loss(params, s, t), want, rtol=1e-5)
    shapes = jax.eval_shape(lambda: fitnet.fitnet_init(jax.random.key(0), s, t))
    assert shapes["conv"]["kernel"].shape == (k, k, 4, 6)
    # through the registry: weight applied, the params key is the unit's
    loss = L.build_losses([dict(type="fitnet", weight=100.0, s_key="f", t_key="f")])
    total, terms = loss({"fitnet_Student_Teacher": params}, {"Student": {"f": s}, "Teacher": {"f": t}}, None)
    close(terms["fitnet/Student-Teacher"], 100.0 * want, rtol=1e-5)


def test_fitnet_conv3x3_regressor_is_conv_bn_relu():
    """RepDistiller's ConvReg: 3×3 conv (pad 1) → BatchNorm with batch statistics over N, H, W → ReLU."""
    s, t = _feats(4, 3, 3, 2), _feats(4, 3, 3, 5)
    w = RNG.normal(size=(3, 3, 2, 5)).astype(np.float32)
    b = RNG.normal(size=5).astype(np.float32)
    gamma, beta = RNG.uniform(0.5, 1.5, 5).astype(np.float32), RNG.normal(size=5).astype(np.float32)
    y = np_conv_valid(np.pad(s, ((0, 0), (1, 1), (1, 1), (0, 0))), w, b)
    mu, var = y.mean((0, 1, 2)), y.var((0, 1, 2))
    y = np.maximum((y - mu) / np.sqrt(var + 1e-5) * gamma + beta, 0)
    params = {"conv": {"kernel": w, "bias": b}, "bn": {"scale": gamma, "bias": beta}}
    close(fitnet.fitnet_loss(params, s, t, regressor="conv3x3"), np.mean((y - t) ** 2), rtol=1e-4)


# --- AT -------------------------------------------------------------------------------------------------

def test_attention_transfer_matches_paper():
    """β/2 · Σ_j mean_{n,i}((Q_s − Q_t)²), Q = normalised Σ_c A_c²; a larger map is average-pooled first."""
    s = [RNG.normal(size=(3, 4, 4, 2)), RNG.normal(size=(3, 4, 4, 3))]
    t = [RNG.normal(size=(3, 4, 4, 5)), RNG.normal(size=(3, 2, 2, 7))]
    pooled = s[1].reshape(3, 2, 2, 2, 2, 3).mean((2, 4))  # 4×4 → 2×2 by 2×2 block means
    want = 500.0 * (np.mean((np_attention(s[0]) - np_attention(t[0])) ** 2)
                    + np.mean((np_attention(pooled) - np_attention(t[1])) ** 2))
    close(at.at_loss([x.astype(np.float32) for x in s], [x.astype(np.float32) for x in t], p=2.0, beta=1000.0),
          want, rtol=1e-5)
    loss = L.build_losses([dict(type="at", s_keys=["a", "b"], t_keys=["a", "b"])])  # defaults: p=2, β=1000
    out = {"Student": {"a": s[0], "b": s[1]}, "Teacher": {"a": t[0], "b": t[1]}}
    close(loss({}, out, None)[0], want, rtol=1e-5)
    g = jax.grad(lambda x: at.at_loss([x], [t[0]]))(jnp.asarray(s[0], jnp.float32))
    assert np.all(np.isfinite(g)) and np.any(g)
    from kdjax.errors import ConfigError
    with pytest.raises(ConfigError, match="t_keys"):
        L.build_losses([dict(type="at", s_keys=["a", "b"], t_keys=["a"])])


# --- logit standardization ------------------------------------------------------------------------------

def _logits(n=6, c=10, scale=3.0):
    return (RNG.normal(size=(n, c)) * scale).astype(np.float32)


def test_kd_and_dkd_logit_standardization_match_paper():
    s, t, y = _logits(), _logits(scale=6.0), RNG.integers(0, 10, 6)
    out = {"Student": {"logits": s}, "Teacher": {"logits": t}}
    kd = L.build_losses([dict(type="kd", temperature=2.0, logit_stand=True)])
    close(kd({}, out, None)[0], np_kd(np_zscore(s), np_zscore(t), 2.0), rtol=2e-5)
    dkd = L.build_losses([dict(type="dkd", temperature=2.0, alpha=9.0, beta=9.0, logit_stand=True)])
    close(dkd({}, out, y)[0], np_dkd(np_zscore(s), np_zscore(t), y, 2.0, 9.0, 9.0), rtol=2e-5)
    # default off: unchanged KD / DKD (the golden cases)
    close(L.build_losses([dict(type="kd", temperature=4.0)])({}, out, None)[0], np_kd(s, t, 4.0), rtol=2e-5)
    close(L.build_losses([dict(type="dkd", temperature=4.0)])({}, out, y)[0], np_dkd(s, t, y, 4.0, 1, 1), rtol=2e-5)
    # the point of the paper: invariant to each model's logit shift and scale
    moved = {"Student": {"logits": 0.3 * s - 2.0}, "Teacher": {"logits": 4.0 * t + 7.0}}
    close(kd({}, moved, None)[0], kd({}, out, None)[0], rtol=1e-4)


# --- SKD ------------------------------------------------------------------------------------------------

def np_skd(s, t, y, temp, mult, alpha):
    """PaddleClas SKDLoss: layer_norm (ε 1e-7, no affine) × multiplier; α·T²·soft-CE_T + (1 − α)·CE."""
    ln = lambda z: (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-7) * mult  # noqa: E731
    s, t = ln(s.astype(np.float64)), ln(t.astype(np.float64))
    kd = np.mean(-np.sum(np_softmax(t / temp) * np_log_softmax(s / temp), -1)) * temp ** 2
    ce = np.mean(-np_log_softmax(s)[np.arange(len(y)), y])
    return alpha * kd + (1 - alpha) * ce


def test_skd_matches_paddleclas_formula():
    s, t, y = _logits(), _logits(scale=5.0), RNG.integers(0, 10, 6)
    out = {"Student": {"logits": s}, "Teacher": {"logits": t}}
    loss = L.build_losses([dict(type="skd", temperature=2.0, multiplier=2.0, alpha=0.9)])
    close(loss({}, out, y)[0], np_skd(s, t, y, 2.0, 2.0, 0.9), rtol=2e-5)
    close(loss({}, out, None)[0], np_skd(s, t, t.argmax(1), 2.0, 2.0, 0.9), rtol=2e-5)  # no labels: teacher argmax
    assert L.loss_types()["skd"].defaults == dict(temperature=1.0, multiplier=2.0, alpha=0.9, use_target_as_gt=False)


# --- PEFD -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spatial", [(), (3, 2)])
def test_pefd_matches_projector_ensemble_cosine(spatial):
    """mean_n(1 − cos(flatten(1/q Σ_k ReLU(W_k s + b_k)), flatten(t))), q = 3 projectors."""
    s = RNG.normal(size=(5,) + spatial + (4,)).astype(np.float32)
    t = RNG.normal(size=(5,) + spatial + (6,)).astype(np.float32)
    params = {f"projector_{k}": {"kernel": RNG.normal(size=(4, 6)).astype(np.float32),
                                 "bias": RNG.normal(size=6).astype(np.float32) * 0.1} for k in range(3)}
    f = sum(np.maximum(s @ p["kernel"] + p["bias"], 0) for p in params.values()) / 3
    f, g = f.reshape(5, -1), t.reshape(5, -1)
    cos = np.sum(f * g, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(g, axis=1))
    loss = L.build_losses([dict(type="pefd", weight=25.0, s_key="x", t_key="x", student_channels=4,
                                teacher_channels=6)])
    out = {"Student": {"x": s}, "Teacher": {"x": t}}
    close(loss({"pefd_Student_Teacher": params}, out, None)[0], 25.0 * np.mean(1 - cos), rtol=1e-5)
    init = jax.eval_shape(lambda: loss.init(jax.random.key(0), out))
    assert set(init["pefd_Student_Teacher"]) == {"projector_0", "projector_1", "projector_2"}


# --- CRD ------------------------------------------------------------------------------------------------

def np_crd(params, state, s, t, idx, cidx, temp=0.07, m=0.5):
    """RepDistiller CRDLoss: embeddings, scores against the other side's memory, NCE (Eq. 18), memory update."""
    def embed(x, p):
        v = x.reshape(len(x), -1) @ p["linear"]["kernel"] + p["linear"]["bias"]
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    vs, vt = embed(s, params["embed_s"]), embed(t, params["embed_t"])
    mem_s, mem_t = np.array(state["memory_s"], np.float64), np.array(state["memory_t"], np.float64)
    n_data, k = len(mem_s), cidx.shape[1] - 1
    out_s = np.exp(np.einsum("bkd,bd->bk", mem_t[cidx], vs) / temp)
    out_t = np.exp(np.einsum("bkd,bd->bk", mem_s[cidx], vt) / temp)
    z_s = out_s.mean() * n_data if state["z_s"] < 0 else state["z_s"]
    z_t = out_t.mean() * n_data if state["z_t"] < 0 else state["z_t"]

    def nce(p):
        c = k / n_data
        return -(np.log(p[:, 0] / (p[:, 0] + c + 1e-7)).sum() + np.log(c / (p[:, 1:] + c + 1e-7)).sum()) / len(p)

    loss = nce(out_s / z_s) + nce(out_t / z_t)
    for mem, v in ((mem_s, vs), (mem_t, vt)):
        rows = m * mem[idx] + (1 - m) * v
        mem[idx] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return loss, dict(memory_s=mem_s, memory_t=mem_t, z_s=z_s, z_t=z_t)


def test_crd_matches_repdistiller_formula_and_updates_memory():
    n_data, b, dim = 20, 4, 8
    s, t = RNG.normal(size=(b, 5)).astype(np.float32), RNG.normal(size=(b, 7)).astype(np.float32)
    params = jax.tree.map(np.asarray, crd.crd_init(jax.random.key(1), s, t, feat_dim=dim))
    state = jax.tree.map(np.asarray, crd.crd_state_init(jax.random.key(2), n_data, feat_dim=dim))
    assert state["memory_s"].shape == (n_data, dim) and float(state["z_s"]) == -1.0
    idx = np.array([3, 0, 17, 9])
    cidx = np.concatenate([idx[:, None], RNG.integers(0, n_data, (b, 6))], 1)
    for _ in range(2):  # first call sets Z from the batch, the second keeps it
        want, want_state = np_crd(params, state, s, t, idx, cidx)
        got, state = crd.crd_loss(params, state, s, t, idx, contrast_idx=cidx, nce_k=6)
        close(got, want, rtol=1e-4)
        for key in want_state:
            close(state[key], want_state[key], rtol=1e-4, atol=1e-6)
        state = jax.tree.map(np.asarray, state)
    untouched = np.setdiff1d(np.arange(n_data), idx)
    close(state["memory_s"][untouched], crd.crd_state_init(jax.random.key(2), n_data, dim)["memory_s"][untouched])


def test_crd_through_combined_loss_state_api():
    n_data = 32
    out = {"Student": {"avg_pool": RNG.normal(size=(4, 5))}, "Teacher": {"avg_pool": RNG.normal(size=(4, 7))}}
    loss = L.build_losses([dict(type="gt_ce"), dict(type="crd", weight=0.8, key="avg_pool", feat_dim=8, nce_k=5)])
    out["Student"]["logits"] = RNG.normal(size=(4, 3))
    assert loss.stateful and loss.needs_index and loss.needs_rng
    params = loss.init(jax.random.key(0), out)
    state = loss.init_state(jax.random.key(1), n_data)
    assert set(state) == {"crd_Student_Teacher"} and state["crd_Student_Teacher"]["memory_t"].shape == (32, 8)
    y, idx = np.array([0, 1, 2, 0]), np.array([5, 6, 7, 31])
    total, terms, new = loss.apply(params, state, out, y, rng=jax.random.key(3), indices=idx)
    assert np.isfinite(float(total)) and set(terms) == {"gt_ce/Student", "crd/Student-Teacher"}
    mem = np.asarray(new["crd_Student_Teacher"]["memory_s"])
    close(np.linalg.norm(mem[idx], axis=1), np.ones(4), rtol=1e-5)
    assert float(new["crd_Student_Teacher"]["z_s"]) > 0
    g = jax.grad(lambda p: loss.apply(p, state, out, y, rng=jax.random.key(3), indices=idx)[0])(params)
    assert np.any(np.asarray(g["crd_Student_Teacher"]["embed_t"]["linear"]["kernel"]))  # teacher head trains
    with pytest.raises(ValueError, match="loss_state"):
        loss(params, out, y, rng=jax.random.key(3), indices=idx)
    with pytest.raises(ValueError, match="index"):
        loss.apply(params, state, out, y, rng=jax.random.key(3))


# --- soft labels (mixup / cutmix) -----------------------------------------------------------------------

def test_gt_ce_uses_soft_labels_from_the_batch():
    """−mean_n Σ_c q_nc log softmax(x_n)_c; ε smooths as (1 − ε) q + ε / C. Threaded through steps.apply_losses."""
    from kdjax.steps import apply_losses

    x, y = _logits(4, 5), np.array([0, 1, 2, 3])
    lam = 0.7
    q = (lam * np.eye(5)[y] + (1 - lam) * np.eye(5)[y[::-1]]).astype(np.float32)
    logp = np_log_softmax(x.astype(np.float64))
    loss = L.build_losses([dict(type="gt_ce")])
    out = {"Student": {"logits": x}}
    close(loss({}, out, y, soft_labels=q)[0], np.mean(-np.sum(q * logp, 1)), rtol=1e-6)
    smooth = L.build_losses([dict(type="gt_ce", epsilon=0.1)])
    close(smooth({}, out, y, soft_labels=q)[0], np.mean(-np.sum((0.9 * q + 0.02) * logp, 1)), rtol=1e-6)
    batch = {"label": y, "soft_label": q}
    total, terms, state = apply_losses(loss, {}, None, out, batch, None, None)
    close(total, np.mean(-np.sum(q * logp, 1)), rtol=1e-6)
    assert state is None
    hard, _, _ = apply_losses(loss, {}, None, out, {"label": y}, None, None)  # no soft labels: hard CE
    close(hard, np.mean(-logp[np.arange(4), y]), rtol=1e-6)


# --- multi-teacher --------------------------------------------------------------------------------------

def test_multi_teacher_losses_and_removing_a_teacher():
    from kdjax.errors import ConfigError

    cfg = load_config("configs/multi_teacher.py")
    entries = list(cfg.losses.values())
    s, t1, t2, y = _logits(), _logits(scale=4.0), _logits(scale=4.0), RNG.integers(0, 10, 6)
    out = {"Student": {"logits": s}, "Teacher1": {"logits": t1}, "Teacher2": {"logits": t2}}
    total, terms = L.build_losses(entries)({}, out, y)
    ce = np.mean(-np_log_softmax(s.astype(np.float64))[np.arange(6), y])
    close(total, ce + 0.45 * np_kd(s, t1, 4.0) + 0.45 * np_kd(s, t2, 4.0), rtol=2e-5)
    without = L.build_losses([e for name, e in cfg.losses.items() if name != "kd_teacher2"])({}, out, y)[0]
    assert abs(float(total) - float(without)) > 1e-3
    close(float(total) - float(without), terms["kd/Student-Teacher2"], rtol=1e-4)
    with cfg.unlocked():  # dropping the model but not its loss entry is a config error naming the entry
        del cfg.models["Teacher2"]
    from kdjax.config.check import check_config
    with pytest.raises(ConfigError, match="kd_teacher2"):
        check_config(cfg)


# --- configs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", NEW_CONFIGS)
def test_new_configs_validate_and_pair_shapes(method):
    """Config checks and the loss/model shape pairing (jax.eval_shape: no compute) of each offline default."""
    from kdjax.config.check import check_config, check_model_outputs
    from kdjax.models.distillation import DistillationModel, build_submodels, normalize

    cfg = load_config(f"configs/{method}.py")
    check_config(cfg)
    model = DistillationModel(build_submodels(cfg.models, 10))
    # the offline defaults compute mean/std from the data (unset here): any normalisation does for shapes
    sample = normalize(jnp.zeros((2, 28, 28, 1), jnp.uint8), tuple(cfg.data.mean) or (0.5,), tuple(cfg.data.std) or (0.5,))
    check_model_outputs(cfg, model, L.build_losses(list(cfg.losses.values())), sample, 10)


@pytest.mark.parametrize("path", ["fitnet:cifar100", "at:cifar100", "kd_ls:cifar100", "dkd_ls:cifar100",
                                  "skd:imagenet", "pefd:imagenet", "crd:cifar100"])
def test_new_presets_need_a_teacher(path):
    from kdjax.config.check import check_config
    from kdjax.errors import ConfigError

    method, preset = path.split(":")
    with pytest.raises(ConfigError, match=r"models\.Teacher\.init"):
        check_config(load_config(f"configs/{method}.py", preset))
