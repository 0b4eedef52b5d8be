"""Check kdjax's losses against golden vectors made by the reference code: `python -m kdjax.tools.verify_golden DIR`.

Everything is read from DIR/manifest.json and the npz files: the loss family from each case's `loss`,
hyper-parameters, input names and layouts (NCHW maps -> NHWC, OIHW conv weights -> HWIO), and which
outputs to compare. Gradients are d(sum(loss))/d(input) by jax.grad. One line per case, then
`N passed, M failed`; the exit status is 1 when anything failed.

Conventions worth knowing:
* Combined cases are built as a kdjax loss config and run through CombinedLoss. kdjax applies every
  weight; PaddleClas' CombinedLoss, given a single entry, returns that entry's first value
  unweighted, so for single-entry configs kdjax's numbers are divided by the weight before comparing.
* A reference output that is entirely NaN/inf (mdistiller's DKD teacher gradient, where torch's
  kl_div differentiates log(0)) cannot be compared and is reported as skipped, not failed.
* PaddleClas never differentiates the teacher side of soft CE / KL / DKD (grad_teacher == 0 in its
  files); mdistiller (torch) does, so mdistiller cases use `teacher_grad=True`.
* The plans of ../shared/golden_methods' logit families (MLKD, LS-KD/DKD, CTKD, NKD, USKD) are in
  golden_logit_methods.py; a plan may compare an output with another stored one (`Plan.against`, e.g. a float32
  reference that lost precision against its `_f64` twin) and override its tolerance, saying why.
"""

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

import kdjax.losses as L
from kdjax.losses import afd, dist, distance, dkd, dml, gt_ce, kd, mgd, rkd, soft_ce, wsl
from kdjax.config.paddleclas import from_paddleclas

NOT_COMPARED = ("loss_f64",)  # the reference run in float64; kdjax computes in float32


@dataclass
class Plan:
    """How to compute one case from its inputs (reference layout): `fn` gives the differentiated
    output `primary` (with its gradient), `extras` further outputs (no gradient).

    Compiling dominates the run time. Run eagerly, the logit losses reuse each other's per-op
    compilations across cases; the relational feature losses (many shapes, big einsums) are cheaper
    compiled as one program (`jit=True`)."""

    fn: Callable[[Dict[str, jax.Array]], Dict[str, jax.Array]]
    primary: str = "loss"
    extras: Optional[Callable[[Dict[str, jax.Array]], Dict[str, jax.Array]]] = None
    jit: bool = False
    # per computed output: the stored output it is compared with when not its own name (e.g. a float32 reference
    # that lost precision: its `_f64` twin), and rtol / atol overrides; each use says why in its plan
    against: Dict[str, str] = field(default_factory=dict)
    rtol: Dict[str, float] = field(default_factory=dict)
    atol: Dict[str, float] = field(default_factory=dict)


@dataclass
class CaseResult:
    name: str
    passed: bool
    worst_rel: float = 0.0
    worst_what: str = ""
    notes: List[str] = field(default_factory=list)

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        where = f" ({self.worst_what})" if self.worst_what else ""
        notes = f"  [{'; '.join(self.notes)}]" if self.notes else ""
        return f"{self.name:<58} {status} worst_rel_err={self.worst_rel:.2e}{where}{notes}"


# --- inputs --------------------------------------------------------------------------------------

def _is_nchw(spec: dict) -> bool:
    return "NCHW" in spec.get("layout", "")


def _nhwc(x, spec: dict):
    return jnp.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 and _is_nchw(spec) else x


def _role(case: dict, prefix: str) -> str:
    """The float input whose name starts with `prefix` ('student' / 'teacher')."""
    names = [n for n, s in case["inputs"].items() if n.startswith(prefix) and "int" not in s.get("dtype", "")]
    if len(names) != 1:
        raise ValueError(f"expected one '{prefix}_*' input, found {names}")
    return names[0]


def _pair(case: dict, x: dict):
    """(student, teacher) inputs, feature maps turned NHWC."""
    s, t = _role(case, "student"), _role(case, "teacher")
    return _nhwc(x[s], case["inputs"][s]), _nhwc(x[t], case["inputs"][t])


def _labels(case: dict, x: dict, hp: dict):
    if "labels" not in x or ("target" in hp and hp["target"] is None):
        return None
    return x["labels"]


def _suffix_index(name: str) -> int:
    return int(re.search(r"(\d+)$", name).group(1))


# --- single-loss plans -----------------------------------------------------------------------------

def _plan_ce(case, hp):
    s = _role(case, "student")
    eps, reduction = hp.get("epsilon"), hp.get("reduction", "mean")
    return Plan(lambda x: {"loss": gt_ce.cross_entropy(x[s], x["labels"], eps, reduction)})


def _plan_soft_ce(case, hp):
    return Plan(lambda x: {"loss": soft_ce.soft_ce_loss(*_pair(case, x))})


def _plan_dml(case, hp):
    act = hp.get("act", "softmax")
    return Plan(lambda x: {"loss": dml.dml_loss(*_pair(case, x), act, bool(hp.get("sum_across_class_dim", False)),
                                              float(hp.get("eps", 1e-12)))})


def _plan_kd(case, hp):
    return Plan(lambda x: {"loss": kd.kl_div_loss(*_pair(case, x), float(hp.get("temperature", 4.0)))})


def _plan_dkd(case, hp):
    temp, alpha, beta = (float(hp.get(k, 1.0)) for k in ("temperature", "alpha", "beta"))

    def target(x):
        return None if hp.get("use_target_as_gt") else _labels(case, x, hp)

    def extras(x):
        tckd, nckd = dkd.dkd_parts(*_pair(case, x), target(x), temp)
        return {"loss_tckd_unweighted": tckd, "loss_nckd_unweighted": nckd}
    return Plan(lambda x: {"loss": dkd.dkd_loss(*_pair(case, x), target(x), temp, alpha, beta)}, extras=extras)


def _plan_dist(case, hp):
    beta, gamma = float(hp.get("beta", 1.0)), float(hp.get("gamma", 1.0))
    return Plan(lambda x: {"loss": dist.dist_loss(*_pair(case, x), beta, gamma)})


def _plan_wsl(case, hp):
    def fn(x):
        s, t = _pair(case, x)
        target = None if hp.get("use_target_as_gt") else _labels(case, x, hp)
        return {"loss": wsl.wsl_loss(s, t, target, float(hp.get("temperature", 2.0)))}
    return Plan(fn)


def _plan_distance(case, hp):
    delta = float((hp.get("kwargs") or {}).get("delta", 1.0))  # paddle SmoothL1Loss(delta=...)
    return Plan(lambda x: {"loss": distance.distance_loss(*_pair(case, x), hp.get("mode", "l2"), hp.get("act"), delta)})


def _plan_rkd_angle(case, hp):
    return Plan(lambda x: {"loss": rkd.rkd_angle_loss(*_pair(case, x), hp.get("target_size"))}, jit=True)


def _plan_rkd_distance(case, hp):  # RkdDistance's own default pools to 1×1
    size, eps = hp.get("target_size", 1), float(hp.get("eps", 1e-12))
    return Plan(lambda x: {"loss": rkd.rkd_distance_loss(*_pair(case, x), size, eps)}, jit=True)


def _mgd_params(x: dict) -> dict:
    """paddle state-dict entries param_<layer>_{weight,bias} -> flax {layer: {kernel (HWIO), bias}}."""
    params: Dict[str, dict] = {}
    for name, value in x.items():
        m = re.fullmatch(r"param_(.+)_(weight|bias)", name)
        if m:
            layer = params.setdefault(m.group(1), {})
            layer["kernel" if m.group(2) == "weight" else "bias"] = (
                jnp.transpose(value, (2, 3, 1, 0)) if m.group(2) == "weight" else value)
    return params


def _plan_mgd(case, hp):
    alpha, lam = float(hp.get("alpha_mgd", 1.756)), float(hp.get("lambda_mgd", 0.15))

    def fn(x):
        s, t = _pair(case, x)
        return {"loss": mgd.mgd_loss(_mgd_params(x), s, t, alpha_mgd=alpha, lambda_mgd=lam,
                                   mask_uniform=x["mask_uniform"])}
    return Plan(fn, extras=lambda x: {"mask": mgd.mgd_mask(x["mask_uniform"], lam)}, jit=True)


def _plan_afd(case, hp):
    n_t = afd.unique_shapes(hp["t_shapes"])[0] if "t_shapes" in hp else next(
        (list(v) for k, v in hp.items() if k.startswith("n_t")), None)

    def fn(x):
        vs = [x[n] for n in sorted((n for n in x if n.startswith("value_s_")), key=_suffix_index)]
        vt = [x[n] for n in sorted((n for n in x if n.startswith("value_t_")), key=_suffix_index)]
        if n_t is None:
            raise ValueError("AFD case without t_shapes or n_t: cannot pair teacher and student values")
        total, per = afd.afd_attention_loss(x["p_t"], x["p_s"], x["bilinear_key"], x["query"], vs, vt, n_t)
        return {"loss": total, "loss_per_teacher_feature": per}
    return Plan(fn, jit=True)


def _plan_deit(case, hp):
    """facebookresearch/deit DistillationLoss: outputs = (student_cls_logits, student_dist_logits); the files also hold
    the reference run at alpha = 0 (`base_term`) and alpha = 1 (`distillation_term`)."""
    from kdjax.losses import deit

    kind, alpha, tau = hp["distillation_type"], float(hp["alpha"]), float(hp.get("tau", 1.0))

    def value(x, a):
        return deit.deit_loss(x["student_cls_logits"], x["student_dist_logits"], x["teacher_logits"], x["labels"],
                              kind, a, tau)
    return Plan(lambda x: {"loss": value(x, alpha)},
                extras=lambda x: {"base_term": value(x, 0.0), "distillation_term": value(x, 1.0)})


# --- mdistiller distillers and PaddleClas CombinedLoss -------------------------------------------------

def _hp_ending(hp: dict, suffix: str, default: float) -> float:
    return float(next((v for k, v in hp.items() if k.endswith(suffix)), default))


def _logit_outputs(case, x):
    s, t = _pair(case, x)
    return {"Student": {"logits": s}, "Teacher": {"logits": t}}


def _plan_mdistiller_kd(case, hp):
    temp = float(hp.get("temperature", 4.0))
    distiller = L.build_losses([dict(type="gt_ce", weight=_hp_ending(hp, "CE_WEIGHT", 0.1)),
                                dict(type="kd", weight=_hp_ending(hp, "KD_WEIGHT", 0.9), temperature=temp)])

    def extras(x):
        _, terms = distiller({}, _logit_outputs(case, x), x["labels"])
        return {"paddleclas_kldiv_loss_same_inputs": kd.kl_div_loss(*_pair(case, x), temp),
                "distiller_loss_ce": terms["gt_ce/Student"], "distiller_loss_kd": terms["kd/Student-Teacher"]}
    return Plan(lambda x: {"loss": kd.kl_div_loss(*_pair(case, x), temp, teacher_grad=True)}, extras=extras)


def _plan_mdistiller_dkd(case, hp):
    temp, alpha, beta = (float(hp.get(k, 1.0)) for k in ("temperature", "alpha", "beta"))
    dkd_params = dict(temperature=temp, alpha=alpha, beta=beta)
    warmups = [(n, float(m.group(1)), float(m.group(2))) for n in case["outputs"]
               for m in [re.fullmatch(r"distiller_loss_kd_warmup([\d.]+)_epoch([\d.]+)", n)] if m]

    def extras(x):
        out = {"paddleclas_dkd_loss_same_inputs": dkd.dkd_loss(*_pair(case, x), x["labels"], temp, alpha, beta)}
        outputs = _logit_outputs(case, x)
        ce = L.build_losses([dict(type="gt_ce", weight=_hp_ending(hp, "CE_WEIGHT", 1.0))])
        out["distiller_loss_ce"] = ce({}, outputs, x["labels"])[0]
        for name, warmup, epoch in warmups:
            distiller = L.build_losses([dict(type="dkd", params=dict(dkd_params, warmup_epochs=warmup))])
            out[name] = distiller({}, outputs, x["labels"], epoch=epoch)[0]
        return out

    def fn(x):
        return {"loss": dkd.dkd_loss(*_pair(case, x), x["labels"], temp, alpha, beta, teacher_grad=True)}
    return Plan(fn, extras=extras)


def _input_name(x: dict, model: str, key: str) -> str:
    """'<model>_logits' for logits; '<model>_<key>', else the model's single '<model>_feat', for features."""
    prefix = model.lower()
    candidates = [f"{prefix}_logits"] if key == "logits" else [f"{prefix}_{key}", f"{prefix}_feat"]
    for name in candidates:
        if name in x:
            return name
    raise KeyError(f"no input for {model}[{key!r}]: tried {candidates}")


def _model_inputs(case, x, config) -> dict:
    """{model: {key: input (NHWC for maps)}} for every model/key the kdjax config reads."""
    outputs: Dict[str, dict] = {}
    for entry in config:
        for unit in entry.get("pairs") or [[m] for m in entry["models"]]:
            for side, model in enumerate(unit):
                key = entry.get("s_key" if side == 0 else "t_key", entry.get("key", "logits"))
                name = _input_name(x, model, key)
                outputs.setdefault(model, {})[key] = _nhwc(x[name], case["inputs"][name])
    return outputs


def _plan_combined(case, hp):
    config, keymap = from_paddleclas(hp["config_Loss_Train"])
    combined = L.build_losses(config)
    # PaddleClas' single-entry shortcut: the first value of that entry, unweighted
    scale = 1.0 / config[0]["weight"] if len(config) == 1 else 1.0

    def fn(x):
        total, terms = combined({}, _model_inputs(case, x, config), x.get("labels"))
        out = {f"out__{k}": terms[combined.entry_term_names(e)[u][p]] * scale
               for k, (e, u, p) in keymap.items()}
        out["out__loss"] = terms[combined.term_names[0]] * scale if len(config) == 1 else total
        return out
    return Plan(fn, primary="out__loss", jit=any(e["type"] in ("rkd", "mgd", "afd") for e in config))


def _plan_for(case: dict) -> Plan:
    loss, hp = case["loss"], case.get("hyper_parameters", {})
    from kdjax.tools import golden_logit_methods  # MLKD, LS-KD/DKD, CTKD, NKD, USKD (../shared/golden_methods)

    if loss.startswith(golden_logit_methods.FAMILIES):
        return golden_logit_methods.plan_for(case, hp)
    if loss.startswith("CombinedLoss"):
        return _plan_combined(case, hp)
    if loss.startswith("mdistiller"):
        return (_plan_mdistiller_dkd if "dkd" in loss else _plan_mdistiller_kd)(case, hp)
    family = re.match(r"[A-Za-z]+", loss).group(0)
    if family == "CELoss" and any(n.startswith("teacher") for n in case["inputs"]):
        return _plan_soft_ce(case, hp)
    plans = {"CELoss": _plan_ce, "DMLLoss": _plan_dml, "KLDivLoss": _plan_kd, "DKDLoss": _plan_dkd,
             "DISTLoss": _plan_dist, "WSLLoss": _plan_wsl, "DistanceLoss": _plan_distance,
             "RKdAngle": _plan_rkd_angle, "RkdDistance": _plan_rkd_distance, "MGDLoss": _plan_mgd,
             "AFDLoss": _plan_afd,
             "DeiT": _plan_deit}
    from kdjax.tools.golden_feature_plans import PLANS as feature_plans  # mdistiller feature losses, ICKD

    plans.update(feature_plans)
    if family not in plans:
        raise ValueError(f"unknown loss family {loss!r}")
    return plans[family](case, hp)


# --- comparison ----------------------------------------------------------------------------------

def tolerances(conventions: dict) -> Tuple[float, float, float]:
    """(rtol, atol, loose rtol) from the manifest's suggested_tolerance text, with its defaults."""
    text = str(conventions.get("suggested_tolerance", ""))
    rtols = [float(v) for v in re.findall(r"rtol\s*([0-9.]+e-?\d+)", text)]
    atols = [float(v) for v in re.findall(r"atol\s*([0-9.]+e-?\d+)", text)]
    return (rtols[0] if rtols else 1e-5), (atols[0] if atols else 1e-6), (rtols[1] if len(rtols) > 1 else 1e-4)


def _loose(case: dict, data: dict) -> bool:
    """Saturated ±30 logits, or RKD/DIST (cancellation): the manifest's looser rtol applies."""
    if re.search(r"large\d+", case["case"]) or re.search(r"RKD|RKd|Rkd|DISTLoss", case["loss"]):
        return True
    logits = [v for k, v in data.items() if "logits" in k and v.size and v.dtype.kind == "f"]
    return any(np.abs(v).max() >= 29.0 for v in logits)


def compare(actual, expected, rtol: float, atol: float) -> Tuple[Optional[bool], float]:
    """(passed, worst relative error); passed is None when the reference has no finite value."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != b.shape:
        a = a.reshape(b.shape) if a.size == b.size else a
        if a.shape != b.shape:
            return False, float("inf")
    finite = np.isfinite(b)
    if not finite.any():
        return None, 0.0
    if not np.isfinite(a).all():
        return False, float("inf")
    diff, ref = np.abs(a - b)[finite], np.abs(b)[finite]
    worst = float(np.max(diff / np.maximum(ref, atol / rtol)))
    return bool(np.all(diff <= atol + rtol * ref)), worst


_COMPILED: Dict[str, Callable] = {}


def _value_and_grad(case: dict, plan: Plan, diff: dict, rest: dict) -> Callable:
    """value_and_grad of the plan (jitted if plan.jit), shared by cases with the same loss,
    hyper-parameters, outputs and input shapes."""
    key = json.dumps([case["loss"], case.get("hyper_parameters"), case["inputs"], sorted(case["outputs"]),
                      {k: (v.shape, str(v.dtype)) for k, v in {**diff, **rest}.items()}, sorted(diff)],
                     sort_keys=True, default=str)
    if key not in _COMPILED:
        def objective(d, r):
            out = plan.fn({**r, **d})
            return jnp.sum(out[plan.primary]), out
        vg = jax.value_and_grad(objective, has_aux=True)
        _COMPILED[key] = jax.jit(vg) if plan.jit else vg
    return _COMPILED[key]


def run_case(directory: str, case: dict, conventions: dict) -> CaseResult:
    result = CaseResult(case["case"], True)
    try:
        with np.load(os.path.join(directory, case["file"])) as f:
            data = {k: f[k] for k in f.files}
        plan = _plan_for(case)
        inputs = {k: jnp.asarray(v.astype(np.int32) if v.dtype.kind in "iu" else v)
                  for k, v in data.items() if k in case["inputs"]}
        diff = {k: v for k, v in inputs.items() if f"grad_{k}" in data and v.dtype.kind == "f"}
        rest = {k: v for k, v in inputs.items() if k not in diff}
        (_, outs), grads = _value_and_grad(case, plan, diff, rest)(diff, rest)
        computed = {**outs, **{f"grad_{k}": g for k, g in grads.items()}}
        if plan.extras is not None:
            computed.update(plan.extras(inputs))
    except Exception as exc:  # a case that cannot run is a failure, reported on its line
        result.passed, result.worst_rel = False, float("inf")
        result.notes.append(f"error: {type(exc).__name__}: {exc}")
        return result
    rtol, atol, loose = tolerances(conventions)
    rtol = loose if _loose(case, data) else rtol
    reference = {n: plan.against.get(n, n) for n in computed}  # computed output -> stored output it is checked with
    covered = set(computed) | set(reference.values())
    unchecked = [n for n in case["outputs"] if n not in covered and n not in NOT_COMPARED]
    # a manifest that suggests its looser rtol "for gradients" (golden_methods: float32 reference gradients through
    # batch-statistics BatchNorms are themselves only ~1e-5 accurate) gets it for grad_* outputs
    grad_rtol = loose if "for gradients" in str(conventions.get("suggested_tolerance", "")) else rtol
    missing = [n for n in unchecked if n.startswith(("grad_", "out__")) or n == "loss"]
    if missing:  # an output kdjax should produce but did not: a translation gap, not a pass
        result.passed = False
        result.notes.append(f"not produced: {', '.join(missing)}")
        unchecked = [n for n in unchecked if n not in missing]
    for name in sorted(n for n in computed if reference[n] in data):
        ref = reference[name]
        r_tol = plan.rtol.get(name, grad_rtol if name.startswith("grad_") else rtol)
        ok, worst = compare(computed[name], data[ref], r_tol, plan.atol.get(name, atol))
        label = name if ref == name else f"{name} vs {ref}"
        if ok is None:
            result.notes.append(f"{label}: reference not finite, skipped")
            continue
        if not ok:
            result.passed = False
            result.notes.append(f"{label} off")
        if worst >= result.worst_rel:
            result.worst_rel, result.worst_what = worst, f"{label}; rtol {r_tol:g}"
    if unchecked:
        result.notes.append(f"not checked: {', '.join(unchecked)}")
    return result


def verify(directory: str, select: str = "", echo: Callable[[str], None] = lambda line: None
           ) -> List[CaseResult]:
    """Run every case of DIR/manifest.json whose name contains `select`; `echo` gets each result line."""
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    conventions = manifest.get("conventions", {})
    results = []
    for case in manifest["cases"]:
        if select in case["case"]:
            results.append(run_case(directory, case, conventions))
            echo(results[-1].line())
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdjax.tools.verify_golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="folder with manifest.json and the .npz golden files")
    parser.add_argument("-k", "--select", default="", help="only cases whose name contains this text")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.directory, "manifest.json")):
        from kdjax.cli.run import fail

        fail("kdjax.tools.verify_golden", f"{args.directory}: no manifest.json there")
    results = verify(args.directory, args.select, echo=lambda line: print(line, flush=True))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
