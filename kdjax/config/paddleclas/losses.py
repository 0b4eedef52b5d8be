"""`Loss.Train` / `Loss.Eval` → `config.losses`, and the key PaddleClas gives each value (its metric names).

Each PaddleClas entry `- ClassName: {weight, ...}` becomes one kdjax loss entry (DistillationRKDLoss: one per
student/teacher keep-key pair). Every field a wrapper's constructor takes is read; a field it does not take is
refused (PaddleClas itself would fail on it), as is every value kdjax cannot compute exactly. The key formats
(`CELoss_Student`, `loss_dkd_Student_Teacher`, `DMLLoss_Student_Teacher_0`, ...) are those of
`ppcls/loss/distillationloss.py` and `CombinedLoss` at PaddleClas d178931.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from kdjax.config.paddleclas.context import Ctx, join

LOGITS = "logits"


@dataclass
class LossOut:
    """One kdjax loss entry and the PaddleClas key of each of its values ([unit][part])."""

    entry: dict
    keys: List[List[str]]
    path: str
    wrapper: str

    @property
    def kind(self) -> str:
        return self.entry["type"]


@dataclass
class ModelInfo:
    """What the loss translation needs to know of the models: names, frozen flags, AFD heads."""

    frozen: Dict[str, bool] = field(default_factory=dict)
    afd: Dict[str, object] = field(default_factory=dict)  # model name -> arch.AfdHead

    def check(self, ctx: Ctx, names: List[str], path: str):
        if not self.frozen:
            return
        for n in names:
            if n not in self.frozen:
                ctx.refuse(path, f"names model {n!r}, which Arch.models does not define ({', '.join(self.frozen)})")


def _value(v):
    """YAML ints where kdjax wants floats (temperature: 4) become floats; the rest is kept."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _pairs(ctx: Ctx, kw: dict, path: str, info: ModelInfo, field_name="model_name_pairs", default=None):
    pairs = kw.get(field_name, default)
    where = join(path, field_name)
    if not isinstance(pairs, (list, tuple)) or not pairs:
        ctx.refuse(where, f"must be a list of [student, teacher] pairs, got {pairs!r}")
    out = []
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            ctx.refuse(where, f"each pair must be [student, teacher], got {pair!r}")
        out.append([pair[0], pair[1]])
        info.check(ctx, list(pair), where)
    return out


def _key(kw: dict) -> str:
    """`key: null` (the default) hands the loss the whole output; for a model without return_patterns that is its
    logits (and CELoss takes `logits` from a dict), so it reads kdjax's `logits`."""
    key = kw.get("key")
    return LOGITS if key is None else str(key)


def _epsilon(ctx: Ctx, kw: dict, path: str):
    eps = kw.get("epsilon")
    if eps is None:
        return None
    eps = ctx.number(eps, join(path, "epsilon"))
    return eps if 0 < eps < 1 else None  # CELoss: outside (0, 1) means no smoothing


def _fields(ctx: Ctx, kw: dict, path: str, allowed, wrapper: str):
    ctx.only(kw, path, allowed, f"{wrapper} takes no such argument (PaddleClas would fail on it)")


def _pairwise(kind, kw, pairs, params, key_fmt, name=None, **extra):
    entry = dict(type=kind, weight=1.0, pairs=pairs, key=_key(kw), params=params, **extra)
    keys = [[key_fmt.format(a=a, b=b, idx=i, name=name)] for i, (a, b) in enumerate(pairs)]
    return entry, keys


# --- one function per PaddleClas class: (ctx, kw without weight, path, info) -> [(entry, keys)] ----------------

def _gt_ce(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_names", "epsilon", "key", "name"), "DistillationGTCELoss")
    models = ctx.names(kw.get("model_names"), join(path, "model_names"))
    info.check(ctx, models, join(path, "model_names"))
    entry = dict(type="gt_ce", weight=1.0, models=models, key=_key(kw), params=dict(epsilon=_epsilon(ctx, kw, path)))
    return [(entry, [[f"CELoss_{m}"] for m in models])]


def _soft_ce(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "epsilon", "key", "name"), "DistillationCELoss")
    if _epsilon(ctx, kw, path) is not None:
        ctx.refuse(join(path, "epsilon"), "DistillationCELoss with label smoothing smooths the teacher's raw logits "
                                          "as if they were a label; kdjax's soft_ce has no such mode")
    return [_pairwise("soft_ce", kw, _pairs(ctx, kw, path, info), {}, "CELoss_{a}_{b}")]


def _dml(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "act", "weight_ratio", "sum_across_class_dim", "key", "name"),
            "DistillationDMLLoss")
    if kw.get("weight_ratio"):
        ctx.refuse(join(path, "weight_ratio"), "True is DMLLoss' multi-label branch (label-ratio weights from "
                                               "[N, 2, C] attribute labels); kdjax has no multi-label training")
    act = kw.get("act", "softmax")
    if act not in ("softmax", "sigmoid", None):
        ctx.refuse(join(path, "act"), f"must be softmax, sigmoid or null, got {act!r}")
    pairs = _pairs(ctx, kw, path, info)
    params = dict(act=act, sum_across_class_dim=bool(kw.get("sum_across_class_dim", False)))
    out = []
    # a frozen second model: kdjax's `ssld` (the same loss; it insists on the frozen teacher), else `dml`
    for kind in ("dml", "ssld"):
        group = [(i, p) for i, p in enumerate(pairs) if info.frozen.get(p[1], False) == (kind == "ssld")]
        if group:
            entry = dict(type=kind, weight=1.0, pairs=[p for _, p in group], key=_key(kw), params=dict(params))
            out.append((entry, [[f"DMLLoss_{a}_{b}_{i}"] for i, (a, b) in group]))
    return out


def _distance(ctx, kw, path, info):
    _fields(ctx, kw, path, ("mode", "model_name_pairs", "act", "key", "name"),
            "DistillationDistanceLoss (extra arguments go to paddle's L1Loss/MSELoss/SmoothL1Loss, which kdjax's "
            "distance does not take)")
    mode = kw.get("mode", "l2")
    if mode not in ("l1", "l2", "smooth_l1"):
        ctx.refuse(join(path, "mode"), f"must be l1, l2 or smooth_l1, got {mode!r}")
    act = kw.get("act")
    if act not in (None, "softmax", "sigmoid"):
        ctx.refuse(join(path, "act"), f"must be null, softmax or sigmoid, got {act!r}")
    name = str(kw.get("name", "loss_"))
    return [_pairwise("distance", kw, _pairs(ctx, kw, path, info), dict(mode=mode, act=act),
                      "{name}" + mode + "_loss_" + mode + "_{idx}", name=name)]


def _rkd(ctx, kw, path, info):
    _fields(ctx, kw, path, ("target_size", "model_name_pairs", "student_keepkeys", "teacher_keepkeys"),
            "DistillationRKDLoss")
    pairs = _pairs(ctx, kw, path, info, default=[["Student", "Teacher"]])
    s_keys = kw.get("student_keepkeys") or []
    t_keys = kw.get("teacher_keepkeys") or []
    if len(s_keys) != len(t_keys):
        ctx.refuse(join(path, "teacher_keepkeys"), f"must be as long as student_keepkeys ({len(s_keys)}), got "
                                                   f"{len(t_keys)}")
    if not s_keys:
        ctx.refuse(join(path, "student_keepkeys"), "is empty: DistillationRKDLoss then computes nothing; name the "
                                                   "features (e.g. [avg_pool]) or remove the entry")
    target = kw.get("target_size")
    out = []
    for idx, (sk, tk) in enumerate(zip(s_keys, t_keys)):
        entry = dict(type="rkd", weight=1.0, pairs=pairs, s_key=str(sk), t_key=str(tk), key=str(sk),
                     params=dict(target_size=target, angle_weight=1.0, distance_weight=1.0))
        out.append((entry, [[f"loss_angle_{idx}_{a}_{b}", f"loss_dist_{idx}_{a}_{b}"] for a, b in pairs]))
    return out


def _kd(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "temperature", "key", "name"), "DistillationKLDivLoss")
    t = ctx.number(kw.get("temperature", 4), join(path, "temperature"), positive=True)
    return [_pairwise("kd", kw, _pairs(ctx, kw, path, info), dict(temperature=t), "loss_kldiv_{a}_{b}")]


def _dkd(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "key", "temperature", "alpha", "beta", "use_target_as_gt", "name"),
            "DistillationDKDLoss")
    params = dict(temperature=ctx.number(kw.get("temperature", 1.0), join(path, "temperature"), positive=True),
                  alpha=ctx.number(kw.get("alpha", 1.0), join(path, "alpha")),
                  beta=ctx.number(kw.get("beta", 1.0), join(path, "beta")),
                  use_target_as_gt=bool(kw.get("use_target_as_gt", False)))
    return [_pairwise("dkd", kw, _pairs(ctx, kw, path, info), params, "{name}_{a}_{b}",
                      name=str(kw.get("name", "loss_dkd")))]


def _wsl(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "key", "temperature", "name"), "DistillationWSLLoss")
    t = ctx.number(kw.get("temperature", 2.0), join(path, "temperature"), positive=True)
    return [_pairwise("wsl", kw, _pairs(ctx, kw, path, info), dict(temperature=t), "{name}_{a}_{b}",
                      name=str(kw.get("name", "wsl_loss")))]


def _skd(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "key", "temperature", "multiplier", "alpha", "use_target_as_gt",
                            "name"), "DistillationSKDLoss")
    params = dict(temperature=ctx.number(kw.get("temperature", 1.0), join(path, "temperature"), positive=True),
                  multiplier=ctx.number(kw.get("multiplier", 2.0), join(path, "multiplier")),
                  alpha=ctx.number(kw.get("alpha", 0.9), join(path, "alpha")),
                  use_target_as_gt=bool(kw.get("use_target_as_gt", False)))
    return [_pairwise("skd", kw, _pairs(ctx, kw, path, info), params, "{name}_{a}_{b}",
                      name=str(kw.get("name", "skd_loss")))]


def _dist(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pairs", "key", "beta", "gamma", "name"), "DistillationDISTLoss")
    params = dict(beta=ctx.number(kw.get("beta", 1.0), join(path, "beta")),
                  gamma=ctx.number(kw.get("gamma", 1.0), join(path, "gamma")))
    return [_pairwise("dist", kw, _pairs(ctx, kw, path, info), params, "{name}_{a}_{b}",
                      name=str(kw.get("name", "loss_dist")))]


def _one_key(ctx: Ctx, kw: dict, path: str, side: str) -> str:
    """DistillationPairLoss' s_key / t_key: one feature name. The seed document writes s_keys / t_keys (lists);
    a one-name list is read as that name."""
    plural = f"{side}_keys"
    value = kw.get(f"{side}_key")
    where = join(path, f"{side}_key")
    if value is None and kw.get(plural) is not None:
        value, where = kw.get(plural), join(path, plural)
        ctx.note(where, f"read as {side}_key (DistillationPairLoss takes {side}_key; the seed document writes "
                        f"{plural})")
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value:
        ctx.refuse(where, f"must name one feature (e.g. 'blocks[7]'); kdjax's pair losses read one map per side, "
                          f"got {value!r}")
    return value


def _pair_loss(ctx, kw, path, info):
    base = kw.get("base_loss_name")
    common = ("base_loss_name", "model_name_pairs", "s_key", "t_key", "s_keys", "t_keys", "name")
    pairs = _pairs(ctx, kw, path, info)
    s_key, t_key = _one_key(ctx, kw, path, "s"), _one_key(ctx, kw, path, "t")
    name = str(kw.get("name", "loss"))
    fmt = "{name}_{idx}_{a}_{b}"
    if base == "MGDLoss":
        _fields(ctx, kw, path, common + ("student_channels", "teacher_channels", "alpha_mgd", "lambda_mgd"),
                "DistillationPairLoss(MGDLoss)")
        params = dict(student_channels=ctx.number(kw.get("student_channels"), join(path, "student_channels"),
                                                  integer=True, positive=True),
                      teacher_channels=ctx.number(kw.get("teacher_channels"), join(path, "teacher_channels"),
                                                  integer=True, positive=True),
                      alpha_mgd=ctx.number(kw.get("alpha_mgd", 1.756), join(path, "alpha_mgd")),
                      lambda_mgd=ctx.number(kw.get("lambda_mgd", 0.15), join(path, "lambda_mgd")))
        kind = "mgd"
    elif base == "PEFDLoss":
        _fields(ctx, kw, path, common + ("student_channel", "teacher_channel", "num_projectors", "mode"),
                "DistillationPairLoss(PEFDLoss)")
        if kw.get("mode", "flatten") != "flatten":
            ctx.refuse(join(path, "mode"), "only 'flatten' is translated (kdjax's pefd projects the features as they "
                                           "are; for 'gap' capture a pooled feature such as avg_pool)")
        params = dict(student_channels=ctx.number(kw.get("student_channel"), join(path, "student_channel"),
                                                  integer=True, positive=True),
                      teacher_channels=ctx.number(kw.get("teacher_channel"), join(path, "teacher_channel"),
                                                  integer=True, positive=True),
                      num_projectors=ctx.number(kw.get("num_projectors", 3), join(path, "num_projectors"),
                                                integer=True, positive=True))
        kind = "pefd"
    else:
        ctx.refuse(join(path, "base_loss_name"), f"kdjax translates DistillationPairLoss with MGDLoss or PEFDLoss, "
                                                 f"got {base!r}")
    entry = dict(type=kind, weight=1.0, pairs=pairs, s_key=s_key, t_key=t_key, key=s_key, params=params)
    return [(entry, [[fmt.format(name=name, idx=i, a=a, b=b)] for i, (a, b) in enumerate(pairs)])]


def _afd(ctx, kw, path, info):
    _fields(ctx, kw, path, ("model_name_pair", "student_keys", "teacher_keys", "s_shapes", "t_shapes", "qk_dim",
                            "name"), "AFDLoss")
    pair = kw.get("model_name_pair", ["Student", "Teacher"])
    pairs = _pairs(ctx, {"model_name_pair": [pair]}, path, info, field_name="model_name_pair")
    student, teacher = pairs[0]
    if list(kw.get("student_keys", ["bilinear_key", "value"])) != ["bilinear_key", "value"] or \
            list(kw.get("teacher_keys", ["query", "value"])) != ["query", "value"]:
        ctx.refuse(join(path, "student_keys"), "kdjax translates AFDLoss reading the LinearTransform heads' outputs "
                                               "(student_keys [bilinear_key, value], teacher_keys [query, value])")
    heads = {role: info.afd.get(m) for role, m in (("student", student), ("teacher", teacher))}
    for role, model in (("student", student), ("teacher", teacher)):
        head = heads[role]
        if head is None or head.role != role:
            ctx.refuse(join(path, "model_name_pair"), f"{model} must be an AttentionModel with a "
                                                      f"LinearTransform{role.capitalize()} head (Arch)")
    qk_dim = ctx.number(kw.get("qk_dim", 128), join(path, "qk_dim"), integer=True, positive=True)
    for role in ("student", "teacher"):
        if heads[role].qk_dim != qk_dim:
            ctx.refuse(join(path, "qk_dim"), f"is {qk_dim} but {heads[role].path}.qk_dim is {heads[role].qk_dim}")
    ctx.note(join(path, "s_shapes"), "kdjax reads the feature shapes from the captured features (at 224×224 they "
                                     "are the YAML's s_shapes / t_shapes)")
    entry = dict(type="afd", weight=1.0, pairs=pairs, s_keys=heads["student"].keys, t_keys=heads["teacher"].keys,
                 key=LOGITS, params=dict(qk_dim=qk_dim))
    return [(entry, [[str(kw.get("name", "loss_afd"))]])]


def _refuse_multilabel(ctx, kw, path, info):
    ctx.refuse(path, "multi-label training (sigmoid outputs, multi-hot labels, mA) is not supported by kdjax")


def _refuse_plain_ce(ctx, kw, path, info):
    ctx.refuse(path, "a plain CELoss in Loss.Train of a DistillationModel reads the dict of all models' outputs; use "
                     "DistillationGTCELoss with model_names")


TRAIN = {
    "DistillationGTCELoss": _gt_ce, "DistillationCELoss": _soft_ce, "DistillationDMLLoss": _dml,
    "DistillationDistanceLoss": _distance, "DistillationRKDLoss": _rkd, "DistillationKLDivLoss": _kd,
    "DistillationDKDLoss": _dkd, "DistillationWSLLoss": _wsl, "DistillationSKDLoss": _skd,
    "DistillationDISTLoss": _dist, "DistillationPairLoss": _pair_loss, "AFDLoss": _afd,
    "DistillationMultiLabelLoss": _refuse_multilabel, "MultiLabelLoss": _refuse_multilabel,
    "CELoss": _refuse_plain_ce,
}


def translate_train(ctx: Ctx, items, path: str = "Loss.Train", info: Optional[ModelInfo] = None) -> List[LossOut]:
    """`Loss.Train` → one LossOut per kdjax entry, CombinedLoss' rules applied (weights; a single entry's weight is
    ignored and only its first value trained; a key written twice keeps the last value)."""
    info = info or ModelInfo()
    if not isinstance(items, list) or not items:
        ctx.refuse(path, "must list the training losses, e.g. [{DistillationGTCELoss: {weight: 1.0, model_names: "
                         "[Student]}}]")
    outs: List[LossOut] = []
    for i, item in enumerate(items):
        cls, kw = ctx.one_entry(item, join(path, i))
        where = join(path, f"{i}.{cls}")
        if cls not in TRAIN:
            ctx.refuse(where, f"no kdjax translation for {cls}; translated: "
                              f"{', '.join(k for k, f in TRAIN.items() if not f.__name__.startswith('_refuse'))}")
        if "weight" not in kw or kw["weight"] is None:
            ctx.refuse(join(where, "weight"), "missing (PaddleClas' CombinedLoss requires it)")
        weight = ctx.number(kw.pop("weight"), join(where, "weight"))
        for entry, keys in TRAIN[cls](ctx, kw, where, info):
            entry["weight"] = weight
            outs.append(LossOut(entry, keys, where, cls))
    if len(items) == 1:
        values = sum(len(unit) for o in outs for unit in o.keys)
        if values > 1:
            ctx.refuse(path, f"PaddleClas' CombinedLoss trains a single entry on the first of its values only "
                             f"({values} here: {', '.join(k for o in outs for u in o.keys for k in u)}); kdjax "
                             f"trains on all of them. Keep one model pair / key, or add a second entry")
        if outs[0].entry["weight"] != 1.0:
            ctx.note(join(path, "0.weight"), f"{outs[0].entry['weight']:g} has no effect: PaddleClas' CombinedLoss "
                                             f"ignores the weight of a single entry, so kdjax uses 1.0")
            outs[0].entry["weight"] = 1.0
    seen: Dict[str, str] = {}
    for o in outs:
        for unit in o.keys:
            for k in unit:
                if k in seen:
                    ctx.refuse(o.path, f"writes the value {k!r} that {seen[k]} writes too: PaddleClas' CombinedLoss "
                                       f"keeps only the last one; give one of them another name or pair")
                seen[k] = o.path
    return outs


def translate_eval(ctx: Ctx, items, path: str = "Loss.Eval"):
    """`Loss.Eval`: kdjax's evaluation reports every model's mean cross-entropy (`<model>/loss`), which is CELoss /
    DistillationGTCELoss without smoothing; other evaluation losses are refused."""
    if items is None:
        return
    if not isinstance(items, list):
        ctx.refuse(path, "must be a list of losses")
    for i, item in enumerate(items):
        cls, kw = ctx.one_entry(item, join(path, i))
        where = join(path, f"{i}.{cls}")
        if cls not in ("CELoss", "DistillationGTCELoss"):
            ctx.refuse(where, "kdjax's evaluation computes top-1, top-5 and cross-entropy (<model>/loss) of every "
                              "model; no other evaluation loss is translated")
        ctx.only(kw, where, ("weight", "model_names", "key", "name", "epsilon", "reduction"))
        if _epsilon(ctx, kw, where) is not None or kw.get("reduction", "mean") != "mean":
            ctx.refuse(where, "kdjax's evaluation cross-entropy is unsmoothed and averaged (mean)")
        ctx.note(where, "reported as <model>/loss (mean cross-entropy) of every model in kdjax's eval records")


# --- the golden verifier's entry point -----------------------------------------------------------------------

def from_paddleclas(train_losses: List[dict]) -> Tuple[List[dict], Dict[str, Tuple[int, int, int]]]:
    """(kdjax loss config list, PaddleClas output key -> (entry index, unit index, part index)) of a `Loss.Train`
    list alone (no Arch: no frozen flags, so DistillationDMLLoss becomes `dml`)."""
    import copy

    outs = translate_train(Ctx(), copy.deepcopy(train_losses))
    keymap = {k: (e, u, p) for e, o in enumerate(outs) for u, unit in enumerate(o.keys) for p, k in enumerate(unit)}
    return [o.entry for o in outs], keymap
