"""One loss entry of `config.losses`, parsed and checked on its own (no models, no shapes).

Accepted form: `{type, weight=1.0, pairs | models, key='logits', s_key, t_key, s_keys, t_keys,
params={...}}`; hyper-parameters may also sit at the top level (`dict(type='kd', temperature=4)`),
as DESIGN.md's `{type, weight, pairs | models, key, **params}` shows.
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from kdjax.errors import ConfigError
from kdjax.losses.registry import LOSS_TYPES, PARAM_CHECKS, REQUIRED, LossSpec, is_number

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
        msg = PARAM_CHECKS[name](value) if name in PARAM_CHECKS else None
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
    if kind not in LOSS_TYPES:
        raise ConfigError(f"losses[{i}].type", f"unknown loss type {kind!r}; known types: {sorted(LOSS_TYPES)}")
    spec = LOSS_TYPES[kind]
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
        if kind == "at" and len(s_keys) != len(t_keys):
            raise ConfigError(f"losses[{i}].t_keys", f"'at' pairs student and teacher maps one to one: s_keys has "
                              f"{len(s_keys)} names and t_keys {len(t_keys)}; give both the same length")
    key_fields = ("s_key" if "s_key" in cfg else "key", "t_key" if "t_key" in cfg else "key")
    if spec.multi_key:
        key_fields = ("s_keys", "t_keys")
    return LossEntry(i, kind, spec, float(weight), _units(i, spec, cfg), s_key, t_key, s_keys, t_keys,
                     _params(i, spec, cfg), key_fields)


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
            if e.spec.learnable or e.spec.state_init is not None:
                pkey = f"{e.type}_{'_'.join(unit)}"
                pkey = f"{pkey}_{e.index}" if pkey in seen_p else pkey
                seen_p.add(pkey)
            e_pkeys.append(pkey)
        names.append(tuple(e_names))
        pkeys.append(tuple(e_pkeys))
    return tuple(names), tuple(pkeys)
