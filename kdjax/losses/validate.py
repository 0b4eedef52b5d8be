"""Checks of the loss config against the models (names, captured keys, frozen flags) and against
output shapes, all before any compute. Each failure is one ConfigError naming the field to fix."""

from typing import Dict, Iterable, Mapping, Set

from kdjax.errors import ConfigError
from kdjax.losses.config import LossEntry, input_keys, parse_entries

LOGITS = "logits"  # every model returns its logits, captured or not


def _check_models(e: LossEntry, model_names) -> None:
    for unit in e.units:
        for m in unit:
            if m not in model_names:
                raise ConfigError(e.units_field, f"names model {m!r}, which config.models does not define; "
                                  f"defined models: {list(model_names)}. Fix the name or add the model.")


def _check_keys(e: LossEntry, captured_keys: Mapping[str, Iterable[str]]) -> None:
    for unit in e.units:
        for side, m in enumerate(unit):
            available = set(captured_keys.get(m, ())) | {LOGITS}
            for k in input_keys(e, side):
                if k not in available:
                    raise ConfigError(f"{e.field}.{e.key_fields[side]}",
                                      f"model {m!r} does not capture {k!r}; it captures {sorted(available)}. "
                                      f"Add {k!r} to that model's `capture` list or use one of those names.")


def _check_frozen(e: LossEntry, frozen: Mapping[str, bool]) -> None:
    for unit in e.units:
        if e.spec.frozen_teacher and not frozen.get(unit[1], False):
            raise ConfigError(e.units_field, f"'{e.type}' distils from a frozen teacher, but {unit[1]!r} is "
                              "trainable: set its `frozen=True`, or use type='dml' for mutual learning.")
        if not e.spec.learnable and all(frozen.get(m, False) for m in unit):
            raise ConfigError(e.units_field, f"every model this term reads ({', '.join(unit)}) is frozen, so "
                              "it trains nothing and only shifts the loss; remove it or unfreeze a model.")


def validate_losses(loss_configs, model_names, captured_keys: Dict[str, Set[str]],
                    frozen: Dict[str, bool]) -> None:
    """Raise ConfigError(`losses[i].<field>`, how to fix) for the first problem found.

    Covers: unknown type, a weight that is not a number, unknown / missing / out-of-range params
    (temperature <= 0, MGD channels, ...), pairs or models naming a model that is not defined, a key
    the model does not capture, SSLD with a trainable teacher, and terms that read only frozen models.
    """
    model_names = list(model_names)
    for e in parse_entries(loss_configs):
        _check_models(e, model_names)
        _check_keys(e, captured_keys)
        _check_frozen(e, frozen)


# --- shapes ---------------------------------------------------------------------------------------

def _shape(outputs, e: LossEntry, model: str, key: str, side: int):
    if model not in outputs:
        raise ConfigError(e.units_field, f"no outputs for model {model!r}; outputs exist for {sorted(outputs)}")
    if key not in outputs[model]:
        raise ConfigError(f"{e.field}.{e.key_fields[side]}", f"model {model!r} returned no {key!r}; "
                          f"it returns {sorted(outputs[model])}. Add it to the model's `capture` list.")
    return tuple(outputs[model][key].shape)


def _pair_problem(e: LossEntry, s, t):
    """Why this student/teacher shape pair cannot be used by entry e, or None."""
    kind, p = e.type, e.params
    if e.spec.arity == "models":
        return None if len(s) == 2 else f"needs [N, C] logits, got {list(s)}"
    if s[0] != t[0]:
        return f"batch sizes differ: student {list(s)} vs teacher {list(t)}"
    if kind in ("soft_ce", "kd", "dml", "ssld", "dkd", "dist", "wsl", "distance") and s != t:
        return (f"student {list(s)} and teacher {list(t)} differ in shape and '{kind}' has no alignment "
                "layer; pick keys with equal shapes (or use 'mgd', which aligns channels)")
    if kind == "skd" and s != t:
        return (f"student {list(s)} and teacher {list(t)} differ in shape and '{kind}' has no alignment "
                "layer; pick keys with equal shapes")
    if kind in ("dkd", "wsl", "skd") and (len(s) != 2 or s[-1] < 2):
        return f"needs [N, C] logits with C >= 2, got {list(s)}"
    if kind == "rkd":
        if p["target_size"] is not None and (len(s) != 4 or len(t) != 4):
            return f"target_size needs [N, H, W, C] feature maps, got {list(s)} and {list(t)}"
    if kind == "mgd":
        if len(s) != 4 or len(t) != 4 or s[1:3] != t[1:3]:
            return f"needs NHWC maps of equal H and W, got student {list(s)} and teacher {list(t)}"
        if s[3] != p["student_channels"] or t[3] != p["teacher_channels"]:
            return (f"params say {p['student_channels']} -> {p['teacher_channels']} channels but the features "
                    f"have {s[3]} -> {t[3]}; set params.student_channels / teacher_channels to match")
    if kind == "fitnet":
        if len(s) != 4 or len(t) != 4:
            return f"needs NHWC feature maps on both sides, got student {list(s)} and teacher {list(t)}"
        if p["regressor"] == "conv3x3" and s[1:3] != t[1:3]:
            return (f"regressor='conv3x3' needs equal H and W, got student {list(s)} and teacher {list(t)}; "
                    "use regressor='conv' (kernel H_s − H_t + 1) or other keys")
        if s[1] < t[1] or s[2] < t[2]:
            return (f"the student map {list(s)} is smaller than the teacher's {list(t)}: the regressor (a valid "
                    "convolution) cannot enlarge it; pick an earlier student feature or a later teacher one")
    if kind == "pefd":
        if len(s) not in (2, 4) or len(s) != len(t) or s[1:-1] != t[1:-1]:
            return (f"needs [N, C] features or NHWC maps of equal H and W on both sides, got student {list(s)} "
                    f"and teacher {list(t)}")
        if s[-1] != p["student_channels"] or t[-1] != p["teacher_channels"]:
            return (f"params say {p['student_channels']} -> {p['teacher_channels']} channels but the features "
                    f"have {s[-1]} -> {t[-1]}; set params.student_channels / teacher_channels to match")
    if kind == "crd" and (len(s) < 2 or len(t) < 2):
        return f"needs [N, D] features (or maps, flattened per sample), got student {list(s)} and teacher {list(t)}"
    return None


def check_shapes(entries, outputs) -> None:
    """Shape pairing errors as ConfigError; `outputs` may hold arrays or jax.eval_shape structs."""
    for e in entries:
        for unit in e.units:
            if e.spec.multi_key:  # AFD, AT: lists of NHWC maps sharing one batch size
                shapes = [_shape(outputs, e, unit[side], k, side)
                          for side in (0, 1) for k in input_keys(e, side)]
                if any(len(s) != 4 for s in shapes) or len({s[0] for s in shapes}) != 1:
                    raise ConfigError(f"{e.field}.s_keys", f"'{e.type}' needs NHWC feature maps with one batch "
                                      f"size, got {[list(s) for s in shapes]}")
                continue
            s = _shape(outputs, e, unit[0], e.s_key, 0)
            t = _shape(outputs, e, unit[1], e.t_key, 1) if len(unit) > 1 else None
            problem = _pair_problem(e, s, t)
            if problem:
                raise ConfigError(f"{e.field}.{e.key_fields[0]}", f"'{e.type}' on {'-'.join(unit)}: {problem}")
