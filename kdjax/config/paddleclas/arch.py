"""`Arch` → `config.models`: DistillationModel sub-models (PaddleClas semantics: `freeze_params_list`,
`pretrained_list`, each model's `pretrained` / `use_ssld` / `return_patterns` / `return_stages`), `infer_model_name`,
and AFD's AttentionModel (backbone + LinearTransform head) collapsed into the backbone, its head kept for the loss.

Only PaddleClas architectures that kdjax implements with PaddleClas' structure, feature names and weight layout
are translated; any other `name` is refused (kdjax's own archs, e.g. `convnet_teacher`, are accepted as an
explicit kdjax extension for quick runs).
"""

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from kdjax.config.paddleclas.context import Ctx, get, join

# PaddleClas' MODEL_STAGES_PATTERN (return_stages indexes these)
_RESNET_STAGES = {18: ["blocks[1]", "blocks[3]", "blocks[5]", "blocks[7]"],
                  34: ["blocks[2]", "blocks[6]", "blocks[12]", "blocks[15]"],
                  50: ["blocks[2]", "blocks[6]", "blocks[12]", "blocks[15]"],
                  101: ["blocks[2]", "blocks[6]", "blocks[29]", "blocks[32]"],
                  152: ["blocks[2]", "blocks[10]", "blocks[46]", "blocks[49]"],
                  200: ["blocks[2]", "blocks[14]", "blocks[62]", "blocks[65]"]}
_PPLCNET_STAGES = ["blocks2", "blocks3", "blocks4", "blocks5", "blocks6"]
_MV3_STAGES = {"small": ["blocks[0]", "blocks[2]", "blocks[7]", "blocks[10]"],
               "large": ["blocks[0]", "blocks[2]", "blocks[5]", "blocks[11]", "blocks[14]"]}

# constructor arguments a YAML may spell out: accepted when equal to PaddleClas' default (kdjax builds exactly that)
_RESNET_DEFAULTS = dict(stem_act="relu", lr_mult_list=[1.0] * 5, stride_list=[2] * 5, input_image_channel=3,
                        layer_type="ConvBNLayer", use_first_short_conv=True)
_PPLCNET_DEFAULTS = dict(lr_mult_list=[1.0] * 6, stride_list=[2] * 5, use_last_conv=True, act="hardswish")
_PPLCNET_FORWARDED = ("dropout_prob", "class_expand")  # kdjax's PPLCNet takes these as kwargs
_MODEL_FIELDS = ("name", "class_num", "pretrained", "use_ssld", "return_patterns", "return_stages", "data_format")


def _family(arch: str):
    """(family, stages pattern) of a PaddleClas arch name kdjax implements with PaddleClas semantics, else None."""
    m = re.fullmatch(r"ResNet(18|34|50|101|152|200)(_vd)?", arch)
    if m and (m.group(2) or m.group(1) != "200"):
        return "resnet", _RESNET_STAGES[int(m.group(1))]
    if re.fullmatch(r"PPLCNet_x(0_25|0_35|0_5|0_75|1_0|1_5|2_0|2_5)", arch):
        return "pplcnet", _PPLCNET_STAGES
    m = re.fullmatch(r"MobileNetV3_(small|large)_x(0_35|0_5|0_75|1_0|1_25)", arch)
    if m:
        return "mobilenetv3", _MV3_STAGES[m.group(1)]
    return None


def pretrained_dir() -> str:
    """Where `pretrained: True` weights are looked up: KDJAX_PRETRAINED_DIR, else PaddleClas' own download folder."""
    return os.path.expanduser(os.environ.get("KDJAX_PRETRAINED_DIR") or "~/.paddleclas/weights")


def official_weights(arch: str, use_ssld: bool) -> str:
    """The file PaddleClas downloads for `pretrained: True` (its URL's basename)."""
    return os.path.join(pretrained_dir(), f"{arch}{'_ssld' if use_ssld else ''}_pretrained.pdparams")


def official_url(arch: str, use_ssld: bool) -> str:
    return ("https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/"
            f"{arch}{'_ssld' if use_ssld else ''}_pretrained.pdparams")


@dataclass
class AfdHead:
    """An AttentionModel's LinearTransformStudent/Teacher: in kdjax part of the `afd` loss."""

    role: str  # "student" | "teacher"
    qk_dim: int
    keys: List[str]
    path: str


@dataclass
class Model:
    arch: str
    frozen: bool
    init: str
    capture: List[str]
    kwargs: dict
    num_classes: Optional[int]
    path: str


@dataclass
class ArchResult:
    models: Dict[str, Model] = field(default_factory=dict)
    export_model: str = "Student"
    afd: Dict[str, AfdHead] = field(default_factory=dict)


def _bools(ctx: Ctx, value, n: int, path: str) -> List[bool]:
    if value is None:
        return [False] * n
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, bool) for v in value):
        ctx.refuse(path, f"must list True/False once per model ({n}), got {value!r}")
    return list(value)


def _paths(ctx: Ctx, value, n: int, path: str) -> List[Optional[str]]:
    if value is None:
        return [None] * n
    if not isinstance(value, list) or len(value) != n:
        ctx.refuse(path, f"must list one path (or null) per model ({n}), got {value!r}")
    for i, v in enumerate(value):
        if v is not None and not isinstance(v, str):
            ctx.refuse(join(path, i), f"must be a weights path or null, got {v!r}")
    return list(value)


def _weights_path(path: str) -> str:
    """PaddleClas appends `.pdparams` to a path without it; a kdjax export directory is taken as it is."""
    expanded = os.path.expanduser(path)
    if path.endswith((".pdparams", ".pth", ".pt")) or os.path.isdir(expanded):
        return path
    return path + ".pdparams"


def _capture(ctx: Ctx, kw: dict, stages: List[str], path: str) -> List[str]:
    patterns, stages_sel = kw.get("return_patterns"), kw.get("return_stages")
    if patterns and stages_sel not in (None, False):
        ctx.note(join(path, "return_patterns"), "ignored because return_stages is set (as PaddleClas does)")
        patterns = None
    if stages_sel is True:
        return list(stages)
    if stages_sel not in (None, False):
        sel = [stages_sel] if isinstance(stages_sel, int) else stages_sel
        if not isinstance(sel, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in sel):
            ctx.refuse(join(path, "return_stages"), f"must be True, an index or a list of indices, got {stages_sel!r}")
        bad = [i for i in sel if not 0 <= i < len(stages)]
        if bad:
            ctx.refuse(join(path, "return_stages"), f"indices {bad} are outside this model's stages {stages} "
                                                    f"(PaddleClas would drop them with a warning)")
        return [stages[i] for i in sel]
    if patterns is None:
        return []
    return ctx.names(patterns, join(path, "return_patterns"))


def _backbone(ctx: Ctx, key: str, kw: dict, frozen: bool, path: str) -> Model:
    """One plain sub-model (`- Teacher: {name: ResNet34, ...}`)."""
    from kdjax.models import list_models

    arch = kw.get("name")
    if not isinstance(arch, str):
        ctx.refuse(join(path, "name"), f"must name an architecture, got {arch!r}")
    known = set(list_models())
    family = _family(arch)
    if family is None:
        if arch in known and arch not in ("MobileNetV2",):  # kdjax's MobileNetV2 is torchvision's, not PaddleClas'
            ctx.note(join(path, "name"), f"{arch} is a kdjax architecture (not a PaddleClas one)")
            family = ("kdjax", [])
        else:
            ctx.refuse(join(path, "name"), f"{arch} is not an architecture kdjax implements with PaddleClas' "
                                           f"structure and weights; PaddleClas archs kdjax has: ResNet18/34/50/101/152"
                                           f"(_vd), ResNet200_vd, PPLCNet_x0_25..x2_5"
                                           + (", MobileNetV3_*" if any(a.startswith("MobileNetV3") for a in known)
                                              else ""))
    kind, stages = family
    if arch not in known:  # a PaddleClas arch of a family kdjax has, but not this one (yet)
        have = [a for a in sorted(known) if _family(a) and _family(a)[0] == kind]
        ctx.refuse(join(path, "name"), f"{arch} is not in kdjax's model zoo yet"
                                       + (f" (of its family kdjax has {', '.join(have)})" if have else ""))
    defaults = {"resnet": _RESNET_DEFAULTS, "pplcnet": _PPLCNET_DEFAULTS}.get(kind, {})
    forwarded = _PPLCNET_FORWARDED if kind == "pplcnet" else ()
    kwargs = {}
    for name, value in kw.items():
        if value is None or name in _MODEL_FIELDS:
            continue
        if name in forwarded:
            kwargs[name] = value
        elif name in defaults and value == defaults[name]:
            continue
        elif name in defaults:
            ctx.refuse(join(path, name), f"{value!r} differs from PaddleClas' default {defaults[name]!r}, which is the "
                                         f"only {arch} kdjax builds")
        else:
            ctx.refuse(join(path, name), f"not translated: kdjax's {arch} has no such option")
    if kw.get("data_format") not in (None, "NCHW", "NHWC"):
        ctx.refuse(join(path, "data_format"), "must be NCHW or NHWC")
    if kw.get("data_format"):
        ctx.note(join(path, "data_format"), "a memory layout only: kdjax computes in NHWC with the same result")
    pretrained = kw.get("pretrained", False)
    use_ssld = bool(kw.get("use_ssld", False))
    init = ""
    if pretrained is True:
        if kind == "kdjax":
            ctx.refuse(join(path, "pretrained"), f"{arch} has no official PaddleClas weights; give a path")
        init = official_weights(arch, use_ssld)
        ctx.note(join(path, "pretrained"), f"True: PaddleClas' {os.path.basename(init)}, read from {pretrained_dir()} "
                                           f"(KDJAX_PRETRAINED_DIR; PaddleClas downloads it from "
                                           f"{official_url(arch, use_ssld)}; kdjax downloads nothing)")
    elif isinstance(pretrained, str) and pretrained:
        init = _weights_path(pretrained)
    elif pretrained not in (False, None, ""):
        ctx.refuse(join(path, "pretrained"), f"must be True, False or a weights path, got {pretrained!r}")
    if use_ssld and pretrained is not True:
        ctx.note(join(path, "use_ssld"), "has no effect without pretrained: True (as in PaddleClas)")
    num_classes = kw.get("class_num")
    if num_classes is not None:
        num_classes = ctx.number(num_classes, join(path, "class_num"), integer=True, positive=True)
    capture = _capture(ctx, kw, stages, path)
    return Model(arch, frozen, init, capture, kwargs, num_classes, path)


def _attention_model(ctx: Ctx, key: str, kw: dict, frozen: bool, path: str, result: ArchResult) -> Model:
    """AFD's AttentionModel: [backbone, LinearTransformStudent|Teacher]; the head becomes part of the afd loss."""
    ctx.only(kw, path, ("name", "models", "pretrained_list", "freeze_params_list"))
    if frozen:
        ctx.refuse(path, "a frozen AttentionModel freezes its LinearTransform head too; kdjax trains AFD's heads with "
                         "the student: freeze the backbone in the AttentionModel's own freeze_params_list instead")
    subs = kw.get("models")
    if not isinstance(subs, list) or len(subs) != 2:
        ctx.refuse(join(path, "models"), "an AttentionModel kdjax translates is [backbone, LinearTransformStudent or "
                                         "LinearTransformTeacher]")
    freeze = _bools(ctx, kw.get("freeze_params_list"), 2, join(path, "freeze_params_list"))
    inits = _paths(ctx, kw.get("pretrained_list"), 2, join(path, "pretrained_list"))
    (b_key, b_kw) = ctx.one_entry(subs[0], join(path, "models.0"))
    (h_key, h_kw) = ctx.one_entry(subs[1], join(path, "models.1"))
    h_path = join(path, f"models.1.{h_key}")
    head = h_kw.get("name")
    if head not in ("LinearTransformStudent", "LinearTransformTeacher"):
        ctx.refuse(join(h_path, "name"), f"the second model of an AttentionModel must be LinearTransformStudent or "
                                         f"LinearTransformTeacher (AFD), got {head!r}")
    if freeze[1]:
        ctx.refuse(join(path, "freeze_params_list.1"), "kdjax trains AFD's LinearTransform heads with the "
                                                       "student (they are part of its afd loss); a frozen head is "
                                                       "not translated")
    if inits[1]:
        ctx.refuse(join(path, "pretrained_list.1"), "pretrained LinearTransform heads are not translated (kdjax "
                                                    "initialises AFD's heads with the loss)")
    allowed = ("name", "qk_dim", "keys", "t_shapes") + (("s_shapes",) if head == "LinearTransformStudent" else ())
    ctx.only(h_kw, h_path, allowed)
    qk_dim = ctx.number(h_kw.get("qk_dim"), join(h_path, "qk_dim"), integer=True, positive=True)
    keys = ctx.names(h_kw.get("keys"), join(h_path, "keys"))
    b_path = join(path, f"models.0.{b_key}")
    model = _backbone(ctx, key, b_kw, frozen or freeze[0], b_path)
    missing = [k for k in keys if k not in model.capture]
    if missing:
        ctx.refuse(join(h_path, "keys"), f"{missing} are not among the backbone's return_patterns {model.capture}")
    if inits[0]:
        model.init = _weights_path(inits[0])
    result.afd[key] = AfdHead("student" if head == "LinearTransformStudent" else "teacher", qk_dim, keys, h_path)
    ctx.note(h_path, f"{head} (qk_dim {qk_dim}) is part of kdjax's afd loss (trained with the student, never "
                     f"exported); {b_key} is models.{key}")
    return model


def translate_arch(ctx: Ctx, arch) -> ArchResult:
    arch = ctx.mapping(arch, "Arch")
    if not arch:
        ctx.refuse("Arch", "missing: a DistillationModel with its models")
    name = arch.get("name")
    if name != "DistillationModel":
        ctx.refuse("Arch.name", f"kdjax translates distillation configs (name: DistillationModel), got {name!r}")
    ctx.only(arch, "Arch", ("name", "class_num", "models", "pretrained_list", "freeze_params_list",
                            "infer_model_name", "use_sync_bn"))
    models = arch.get("models")
    if not isinstance(models, list) or not models:
        ctx.refuse("Arch.models", "must list the sub-models, e.g. [{Teacher: {name: ResNet34}}, {Student: ...}]")
    n = len(models)
    freeze = _bools(ctx, arch.get("freeze_params_list"), n, "Arch.freeze_params_list")
    inits = _paths(ctx, arch.get("pretrained_list"), n, "Arch.pretrained_list")
    result = ArchResult()
    for i, item in enumerate(models):
        key, kw = ctx.one_entry(item, f"Arch.models.{i}")
        path = f"Arch.models.{i}.{key}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            ctx.refuse(path, "a model name kdjax can use as a config key (letters, digits, _)")
        if key in result.models:
            ctx.refuse(path, f"model {key!r} is defined twice")
        if kw.get("name") == "AttentionModel":
            model = _attention_model(ctx, key, kw, freeze[i], path, result)
        else:
            model = _backbone(ctx, key, kw, freeze[i], path)
        if inits[i]:
            model.init = _weights_path(inits[i])
            ctx.note(f"Arch.pretrained_list.{i}", f"loaded into models.{key} (PaddleClas' DistillationModel passes the "
                                                  f"model's name instead of the model here and fails)")
        result.models[key] = model
        ctx.source(f"models.{key}", path)
    export = get(arch, "infer_model_name")
    if export is None:
        export = "Student" if "Student" in result.models else next(iter(result.models))
        ctx.note("Arch.infer_model_name", f"not set: kdjax exports {export} (PaddleClas would export the whole "
                                          f"DistillationModel)")
    elif export not in result.models:
        ctx.refuse("Arch.infer_model_name", f"{export!r} is not one of the models {list(result.models)}")
    result.export_model = export
    ctx.source("export_model", "Arch.infer_model_name")
    if arch.get("use_sync_bn") is not None:
        ctx.note("Arch.use_sync_bn", "kdjax's BatchNorm always normalises over the whole (global) batch, i.e. synced "
                                     "across devices")
    return result
