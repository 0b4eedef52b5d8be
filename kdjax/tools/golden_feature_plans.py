"""verify_golden plans for mdistiller's feature/relation losses (ReviewKD hcl_loss, PKT, SP, NST, VID, OFD) and
ICKDLoss (../shared/golden_methods, LOSSES.md §8-14): each case's inputs (NCHW maps, OIHW conv weights) are turned
into kdjax's layout (NHWC, HWIO) and the reference's learnable modules get the stored weights injected into kdjax's
loss parameters, the way the seed's MGD / AFD plans do. `PLANS` maps the manifest's loss family to a plan builder;
verify_golden dispatches to it.
"""

import re
from typing import Dict, List

import jax.numpy as jnp

from kdjax.losses import ickd, nst, ofd, pkt, reviewkd, sp, vid


def _plan_cls():
    from kdjax.tools.verify_golden import Plan  # verify_golden imports this module lazily: no cycle

    return Plan


def _nhwc(x):
    return jnp.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x


def _hwio(w):
    return jnp.transpose(w, (2, 3, 1, 0))


def _indexed(x: dict, prefix: str) -> List[str]:
    """Input names prefix0, prefix1, ... (e.g. student_feat_0) in index order."""
    names = [n for n in x if re.fullmatch(re.escape(prefix) + r"\d+", n)]
    return sorted(names, key=lambda n: int(n[len(prefix):]))


def _stages(x: dict):
    """(student maps, teacher maps) as NHWC lists, from student_feat_i / teacher_feat_i or a single student_feat."""
    if "student_feat" in x:
        return [_nhwc(x["student_feat"])], [_nhwc(x["teacher_feat"])]
    return [_nhwc(x[n]) for n in _indexed(x, "student_feat_")], [_nhwc(x[n]) for n in _indexed(x, "teacher_feat_")]


def plan_reviewkd(case, hp):
    return _plan_cls()(lambda x: {"loss": reviewkd.hcl_loss(*_stages(x))}, jit=True)


def plan_pkt(case, hp):
    eps = float(hp.get("eps", 1e-7))
    return _plan_cls()(lambda x: {"loss": pkt.pkt_loss(x["student_feat"], x["teacher_feat"], eps)}, jit=True)


def plan_sp(case, hp):
    return _plan_cls()(lambda x: {"loss": sp.sp_loss(*_stages(x))}, jit=True)


def plan_nst(case, hp):
    return _plan_cls()(lambda x: {"loss": nst.nst_loss(*_stages(x))}, jit=True)


def plan_vid(case, hp):
    eps = float(hp.get("eps", 1e-5))

    def fn(x):
        regressor = {f"conv{j}": {"kernel": _hwio(x[f"regressor_{j}_weight"])} for j in (0, 2, 4)}
        params = {"pair0": {"regressor": regressor, "log_scale": x["log_scale"]}}
        s, t = _stages(x)
        return {"loss": vid.vid_loss(params, s, t, float(hp.get("init_pred_var", 5.0)), eps)}
    return _plan_cls()(fn, jit=True)


def plan_ofd(case, hp):
    kernel = int(hp.get("connector_kernel_size", 1))

    def params(x) -> Dict[str, dict]:
        out = {}
        for i, name in enumerate(_indexed(x, "student_feat_")):
            c_t = x[f"connector_{i}_conv_weight"].shape[0]
            out[f"connector{i}"] = {"conv": {"kernel": _hwio(x[f"connector_{i}_conv_weight"])},
                                    "bn": {"scale": jnp.ones((c_t,), jnp.float32),  # BatchNorm2d init: 1 / 0
                                           "bias": jnp.zeros((c_t,), jnp.float32)}}
        return out

    def margins(x):
        return [jnp.asarray(ofd.ofd_margin(x[f"teacher_bn_{i}_weight"], x[f"teacher_bn_{i}_bias"]))
                for i in range(len(_indexed(x, "student_feat_")))]

    def fn(x):
        s, t = _stages(x)
        return {"loss": ofd.ofd_loss(params(x), s, t, margins(x), kernel)}

    def extras(x):
        return {f"margin_{i}": m for i, m in enumerate(margins(x))}
    # margins are computed in float64 numpy from concrete values (as the reference does at init): not traced
    return _plan_cls()(fn, extras=extras, jit=False)


def plan_ickd(case, hp):
    def fn(x):
        params = {"conv": {"kernel": _hwio(x["embed_conv_weight"])},
                  "bn": {"scale": x["embed_bn_weight"], "bias": x["embed_bn_bias"]}}
        s, t = _stages(x)
        return {"loss": ickd.ickd_loss(params, s, t)}
    return _plan_cls()(fn, jit=True)


# manifest `loss` family (its first word) -> plan builder
PLANS = {"ReviewKD": plan_reviewkd, "PKT": plan_pkt, "SP": plan_sp, "NST": plan_nst, "VID": plan_vid,
         "OFD": plan_ofd, "ICKDLoss": plan_ickd}
