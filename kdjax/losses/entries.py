"""The entries of `config.losses`: parsed (defaults filled, hyper-parameters checked by their loss module), then
checked against the models (names, captured keys, frozen flags) and their output shapes, all before any compute.
Each failure is one ConfigError naming the field to fix.

Accepted form: `{type, weight=1.0, pairs | models, key='logits', s_key, t_key, s_keys, t_keys, params={...}}`;
hyper-parameters may also sit at the top level (`dict(type='kd', temperature=4)`).
"""

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Set, Tuple

from kdjax.errors import ConfigError
from kdjax.losses.registry import REQUIRED, LossSpec, has_state, is_number, loss_types

LOGITS = "logits"  # every model returns its logits, captured or not
STRUCTURAL = ("type", "weight", "pairs", "models", "key", "s_key", "t_key", "s_keys", "t_keys", "params")
DEFAULT_PAIRS = (("Student", "Teacher"),)
DEFAULT_MODELS = ("Student",)


@dataclass(frozen=True)
class LossEntry:
    """A parsed entry: defaults filled in, params checked, one unit per model (gt_ce) or pair."""

    index: int
    type: str
    spec: LossSpec
    weight: float
    units: Tuple[Tuple[str, ...], ...]  # ("Student",) per model, or ("Student", "Teacher") per pair
    s_key: str
    t_key: str
    s_keys: Tuple[str, ...]
    t_keys: Tuple[str, ...]
    params: Dict[str, Any]
    key_fields: Tuple[str, str] = ("key", "key")  # config fields that named s_key / t_key

    @property
    def field(self) -> str:
        return f"losses[{self.index}]"

    @property
    def units_field(self) -> str:
        return f"{self.field}.{self.spec.arity}"


def _plain(cfg) -> Dict[str, Any]:
    """ConfigDict or mapping -> plain dict (FieldReferences resolved)."""
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise TypeError
    return dict(cfg)


def _names(value, field: str, what: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(field, f"must be a non-empty list of {what} names (strings), got {value!r}")
    return tuple(value)


def _units(i: int, spec: LossSpec, cfg: Dict[str, Any]) -> Tuple[Tuple[str, ...], ...]:
    other = "pairs" if spec.arity == "models" else "models"
    if other in cfg:
        hint = ("models=['Student']" if spec.arity == "models" else "pairs=[['Student', 'Teacher']]")
        raise ConfigError(f"losses[{i}].{other}", f"'{spec.name}' reads {spec.arity}, not {other}: use {hint}")
    if spec.arity == "models":
        return tuple((m,) for m in _names(cfg.get("models", DEFAULT_MODELS), f"losses[{i}].models", "model"))
    pairs = cfg.get("pairs", DEFAULT_PAIRS)
    field = f"losses[{i}].pairs"
    if isinstance(pairs, (list, tuple)) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        pairs = [pairs]  # a single flat pair, PaddleClas' `model_name_pair`
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise ConfigError(field, f"must be a list of [student, teacher] name pairs, got {pairs!r}")
    out = []
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(p, str) and p for p in pair)):
            raise ConfigError(field, f"each pair must be [student_name, teacher_name], got {pair!r}")
        out.append(tuple(pair))
    return tuple(out)


def _params(i: int, spec: LossSpec, cfg: Dict[str, Any]) -> Dict[str, Any]:
    given = cfg.get("params") or {}
    try:
        given = _plain(given)
    except TypeError:
        raise ConfigError(f"losses[{i}].params", f"must be a dict of hyper-parameters, got {given!r}") from None
    for name in cfg:
        if name in STRUCTURAL:
            continue
        if name not in spec.defaults:
            known = sorted(set(STRUCTURAL) | set(spec.defaults))
            raise ConfigError(f"losses[{i}].{name}", f"unknown field for '{spec.name}'; known fields: {known}")
        if name in given:
            raise ConfigError(f"losses[{i}].{name}", f"given both here and in params.{name}; keep one")
        given[name] = cfg[name]
    unknown = sorted(set(given) - set(spec.defaults))
    if unknown:
        known = sorted(spec.defaults) or "none"
        raise ConfigError(f"losses[{i}].params.{unknown[0]}",
                          f"unknown parameter for '{spec.name}'; its parameters: {known}")
    params = {}
    for name, default in spec.defaults.items():
        value = given.get(name, default)
        if value is REQUIRED:
            raise ConfigError(f"losses[{i}].params.{name}",
                              f"'{spec.name}' needs params.{name}; add it to the entry")
        if isinstance(value, list):
            value = tuple(value)
        msg = spec.checks[name](value) if name in spec.checks else None
        if msg:
            raise ConfigError(f"losses[{i}].params.{name}", msg)
        params[name] = value
    return params


def parse_entry(i: int, cfg) -> LossEntry:
    """Normalise entry `i`, filling defaults; raises ConfigError naming the offending field."""
    try:
        cfg = _plain(cfg)
    except TypeError:
        raise ConfigError(f"losses[{i}]",
                          f"must be a dict like dict(type='kd', weight=1.0, ...), got {cfg!r}") from None
    kind = cfg.get("type")
    types = loss_types()
    if kind not in types:
        raise ConfigError(f"losses[{i}].type", f"unknown loss type {kind!r}; known types: {sorted(types)}")
    spec = types[kind]
    weight = cfg.get("weight", 1.0)
    if not is_number(weight):
        raise ConfigError(f"losses[{i}].weight", f"must be a number, got {weight!r}")
    key = cfg.get("key", "logits")
    s_key, t_key = cfg.get("s_key", key), cfg.get("t_key", key)
    for name, value in (("key", key), ("s_key", s_key), ("t_key", t_key)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"losses[{i}].{name}", f"must be an output name such as 'logits', got {value!r}")
    s_keys: Tuple[str, ...] = ()
    t_keys: Tuple[str, ...] = ()
    if spec.multi_key:
        for name in ("s_keys", "t_keys"):
            if name not in cfg:
                raise ConfigError(f"losses[{i}].{name}", f"'{kind}' needs s_keys and t_keys: the lists of "
                                  "student / teacher feature names, e.g. ['blocks[0]', 'blocks[1]']")
        s_keys = _names(cfg["s_keys"], f"losses[{i}].s_keys", "feature")
        t_keys = _names(cfg["t_keys"], f"losses[{i}].t_keys", "feature")
    key_fields = ("s_key" if "s_key" in cfg else "key", "t_key" if "t_key" in cfg else "key")
    if spec.multi_key:
        key_fields = ("s_keys", "t_keys")
    entry = LossEntry(i, kind, spec, float(weight), _units(i, spec, cfg), s_key, t_key, s_keys, t_keys,
                      _params(i, spec, cfg), key_fields)
    problem = spec.entry_check(entry) if spec.entry_check else None
    if problem:
        raise ConfigError(f"losses[{i}].{problem[0]}", problem[1])
    return entry


def parse_entries(loss_configs) -> Tuple[LossEntry, ...]:
    if hasattr(loss_configs, "to_list"):
        loss_configs = loss_configs.to_list()
    if isinstance(loss_configs, (str, bytes)) or not hasattr(loss_configs, "__iter__") or isinstance(
            loss_configs, Mapping):
        raise ConfigError("losses", f"must be a list of loss entries, got {type(loss_configs).__name__}")
    entries = tuple(parse_entry(i, cfg) for i, cfg in enumerate(loss_configs))
    if not entries:
        raise ConfigError("losses", "is empty: add at least one entry, e.g. "
                          "dict(type='gt_ce', models=['Student'])")
    return entries


def input_keys(entry: LossEntry, side: int) -> Tuple[str, ...]:
    """The output names entry reads from the first (0) or second (1) model of a unit."""
    if entry.spec.multi_key:
        return entry.s_keys if side == 0 else entry.t_keys
    return (entry.s_key,) if side == 0 else (entry.t_key,)


def term_names(entries) -> Tuple[Tuple[Tuple[str, ...], ...], Tuple[Tuple[Optional[str], ...], ...]]:
    """Per entry, per unit: the term names ('dkd/Student-Teacher', 'rkd/Student-Teacher/angle') and
    the key of its learnable params and state ('mgd_Student_Teacher'); a clash gets '#<entry index>'."""
    seen, seen_p, names, pkeys = set(), set(), [], []
    for e in entries:
        e_names, e_pkeys = [], []
        for unit in e.units:
            base = f"{e.type}/{'-'.join(unit)}"
            parts = tuple(f"{base}/{p}" if p else base for p in e.spec.parts)
            if any(n in seen for n in parts):
                parts = tuple(f"{n}#{e.index}" for n in parts)
            seen.update(parts)
            e_names.append(parts)
            pkey = None
            if e.spec.learnable or has_state(e.spec):
                pkey = f"{e.type}_{'_'.join(unit)}"
                pkey = f"{pkey}_{e.index}" if pkey in seen_p else pkey
                seen_p.add(pkey)
            e_pkeys.append(pkey)
        names.append(tuple(e_names))
        pkeys.append(tuple(e_pkeys))
    return tuple(names), tuple(pkeys)


# --- against the models -------------------------------------------------------------------------


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
    """Why this student/teacher shape pair cannot be used by entry e, or None (the loss module decides)."""
    if e.spec.arity == "models":
        if e.spec.shape_check:  # e.g. uskd's mid feature
            return e.spec.shape_check(e, s, None)
        return None if len(s) == 2 else f"needs [N, C] logits, got {list(s)}"
    if s[0] != t[0]:
        return f"batch sizes differ: student {list(s)} vs teacher {list(t)}"
    return e.spec.shape_check(e, s, t) if e.spec.shape_check else None


def check_shapes(entries, outputs) -> None:
    """Shape pairing errors as ConfigError; `outputs` may hold arrays or jax.eval_shape structs."""
    for e in entries:
        for unit in e.units:
            if e.spec.multi_key:  # AFD, AT: lists of feature maps
                s = [_shape(outputs, e, unit[0], k, 0) for k in input_keys(e, 0)]
                t = [_shape(outputs, e, unit[1], k, 1) for k in input_keys(e, 1)]
                problem = None
                if len({x[0] for x in s + t}) != 1:
                    problem = f"needs one batch size, got {[list(x) for x in s + t]}"
                elif e.spec.shape_check:
                    problem = e.spec.shape_check(e, s, t)
                if problem:
                    raise ConfigError(f"{e.field}.s_keys", f"'{e.type}' on {'-'.join(unit)}: {problem}")
                continue
            s = _shape(outputs, e, unit[0], e.s_key, 0)
            t = _shape(outputs, e, unit[1], e.t_key, 1) if len(unit) > 1 else None
            problem = _pair_problem(e, s, t)
            if problem:
                raise ConfigError(f"{e.field}.{e.key_fields[0]}", f"'{e.type}' on {'-'.join(unit)}: {problem}")
