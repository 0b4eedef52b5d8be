"""What a translation collects while it walks a PaddleClas YAML: refusals (raised at once, naming the YAML path),
notes (what kdjax does differently but equivalently, or ignores on purpose), and where each kdjax field came from.

YAML paths are written the way PaddleClas' `-o` overrides address them (`Arch.models.1.Student.pretrained`,
`Loss.Train.0.DistillationGTCELoss.weight`), so a refusal's path can be fed straight back as an override.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional

from kdjax.errors import ConfigError


class YamlError(ConfigError):
    """A PaddleClas YAML field kdjax cannot translate exactly: the YAML file, the field's path, why, and the fix."""

    def __init__(self, yaml_file: str, path: str, message: str):
        self.yaml_file, self.path = yaml_file, path
        super().__init__(path, message)
        self.args = (str(self),)

    def __str__(self):
        where = f"{self.yaml_file}: " if self.yaml_file else ""
        return f"{where}{self.path}: {self.message}"


def join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


class Ctx:
    """One translation: the YAML's name (for messages), notes in order, and kdjax field → YAML path."""

    def __init__(self, yaml_file: str = ""):
        self.yaml_file = yaml_file
        self.notes: List[str] = []
        self.sources: Dict[str, str] = {}

    def refuse(self, path: str, why: str):
        raise YamlError(self.yaml_file, path, why)

    def note(self, path: str, text: str):
        line = f"{path}: {text}"
        if line not in self.notes:
            self.notes.append(line)

    def source(self, kdjax_field: str, path: str):
        self.sources.setdefault(kdjax_field, path)

    # ---- reading fields -------------------------------------------------------------------------------------
    def mapping(self, value, path: str, what: str = "a mapping") -> Mapping:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.refuse(path, f"must be {what}, got {value!r}")
        return value

    def only(self, d: Mapping, path: str, allowed: Iterable[str], why: str = ""):
        """Refuse the first key of `d` outside `allowed` (a key set to null counts as absent)."""
        allowed = list(allowed)
        for key, value in d.items():
            if key not in allowed and value is not None:
                self.refuse(join(path, key), f"not translated: {why or 'kdjax has no counterpart for this field'} "
                                             f"(fields kdjax reads here: {', '.join(allowed) or 'none'}); remove it "
                                             f"or set it to null (-o {join(path, key)}=None)")

    def one_entry(self, item, path: str):
        """(name, params) of a `- Name: {params}` list item."""
        if not isinstance(item, Mapping) or len(item) != 1:
            self.refuse(path, f"must be one `Name: {{params}}` entry, got {item!r}")
        (name, params), = item.items()
        return str(name), dict(self.mapping(params, join(path, name)))

    def number(self, value, path: str, *, integer: bool = False, positive: bool = False):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and integer:
            ok = float(value) == int(value)
        if ok and positive:
            ok = value > 0
        if not ok:
            kind = "an integer" if integer else "a number"
            self.refuse(path, f"must be {kind}{' > 0' if positive else ''}, got {value!r}")
        return int(value) if integer else float(value)

    def names(self, value, path: str) -> List[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
            self.refuse(path, f"must be a non-empty list of names, got {value!r}")
        return list(value)


def get(d: Mapping, key: str, default: Any = None) -> Any:
    """`d[key]`, with null meaning unset (PaddleClas treats `key: null` like a missing key)."""
    value = d.get(key, default) if d else default
    return default if value is None else value


def first_key(d: Optional[Mapping]) -> str:
    return next(iter(d)) if d else ""
