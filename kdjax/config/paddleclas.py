"""PaddleClas `Loss.Train` lists -> kdjax loss configs, plus the names PaddleClas gives each value.

Used by the golden verifier; also the line-by-line route for users porting a distillation YAML.
AFDLoss has no translation here: its keys name the LinearTransform head outputs, which in kdjax are
part of the loss (give `s_keys` / `t_keys` as backbone feature names instead).
"""

from typing import Dict, List, Tuple

# PaddleClas wrapper -> (kdjax type, hyper-parameters it forwards, output-key format)
_WRAPPERS = {
    "DistillationGTCELoss": ("gt_ce", ("epsilon",), "CELoss_{m}"),
    "DistillationCELoss": ("soft_ce", (), "CELoss_{a}_{b}"),
    "DistillationKLDivLoss": ("kd", ("temperature",), "loss_kldiv_{a}_{b}"),
    "DistillationDMLLoss": ("dml", ("act", "sum_across_class_dim"), "DMLLoss_{a}_{b}_{idx}"),
    "DistillationDKDLoss": ("dkd", ("temperature", "alpha", "beta", "use_target_as_gt"), "{name}_{a}_{b}"),
    "DistillationDISTLoss": ("dist", ("beta", "gamma"), "{name}_{a}_{b}"),
    "DistillationWSLLoss": ("wsl", ("temperature", "use_target_as_gt"), "{name}_{a}_{b}"),
    "DistillationDistanceLoss": ("distance", ("mode", "act"), "{name}{mode}_loss_{mode}_{idx}"),
    "DistillationRKDLoss": ("rkd", ("target_size",), "loss_{part}_{idx}_{a}_{b}"),
    "DistillationPairLoss": ("mgd", ("student_channels", "teacher_channels", "alpha_mgd", "lambda_mgd"),
                             "{name}_{idx}_{a}_{b}"),
}
_DEFAULT_NAMES = {"DistillationDKDLoss": "loss_dkd", "DistillationDISTLoss": "loss_dist",
                  "DistillationWSLLoss": "wsl_loss", "DistillationDistanceLoss": "loss_",
                  "DistillationPairLoss": "loss"}

KeyMap = Dict[str, Tuple[int, int, int]]  # PaddleClas output key -> (kdjax entry, unit, part)


def _value(v):
    """YAML ints where kdjax wants floats (temperature: 4) become floats; the rest is kept."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _one_key(keys, what: str) -> str:
    keys = [keys] if isinstance(keys, str) else list(keys)
    if len(keys) != 1 or keys[0] is None:
        raise ValueError(f"DistillationPairLoss with {what}={keys!r}: kdjax's mgd takes one feature per side")
    return keys[0]


def from_paddleclas(train_losses: List[dict]) -> Tuple[List[dict], KeyMap]:
    """(kdjax loss config, PaddleClas output key -> (entry index, unit index, part index)).

    Each item is `{ClassName: {weight, model_names | model_name_pairs, key, ...}}` as in the YAML.
    """
    config: List[dict] = []
    keymap: KeyMap = {}
    for item in train_losses:
        (cls, kw), = item.items()
        if cls not in _WRAPPERS:
            raise ValueError(f"no kdjax translation for PaddleClas loss {cls}; known: {sorted(_WRAPPERS)}")
        kind, forwarded, fmt = _WRAPPERS[cls]
        if kw.get("weight_ratio"):
            raise ValueError(f"{cls}(weight_ratio=True) (the multi-label gt_label branch) is not supported")
        if cls == "DistillationPairLoss" and kw.get("base_loss_name") != "MGDLoss":
            raise ValueError(f"DistillationPairLoss is translated for base_loss_name=MGDLoss only, "
                             f"got {kw.get('base_loss_name')!r}")
        entry = dict(type=kind, weight=float(kw.get("weight", 1.0)),
                     params={k: _value(kw[k]) for k in forwarded if k in kw})
        name = kw.get("name", _DEFAULT_NAMES.get(cls, ""))
        if kind == "gt_ce":
            entry.update(models=list(kw["model_names"]), key=kw.get("key") or "logits")
            for u, m in enumerate(kw["model_names"]):
                keymap[fmt.format(m=m)] = (len(config), u, 0)
            config.append(entry)
            continue
        pairs = [list(p) for p in kw["model_name_pairs"]]
        entry["pairs"] = pairs
        if kind == "rkd":  # one kdjax entry per keep-key pair; angle and distance parts
            for idx, (sk, tk) in enumerate(zip(kw["student_keepkeys"], kw["teacher_keepkeys"])):
                for u, (a, b) in enumerate(pairs):
                    for part, word in enumerate(("angle", "dist")):
                        keymap[fmt.format(part=word, idx=idx, a=a, b=b)] = (len(config), u, part)
                config.append(dict(entry, s_key=sk, t_key=tk))
            continue
        if kind == "mgd":
            entry.update(s_key=_one_key(kw["s_keys"], "s_keys"), t_key=_one_key(kw["t_keys"], "t_keys"))
        else:
            entry["key"] = kw.get("key") or "logits"
        for u, (a, b) in enumerate(pairs):
            keymap[fmt.format(a=a, b=b, idx=u, name=name, mode=kw.get("mode", "l2"))] = (len(config), u, 0)
        config.append(entry)
    return config, keymap
