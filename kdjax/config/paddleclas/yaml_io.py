"""Reading a PaddleClas YAML the way PaddleClas' `ppcls/utils/config.py` does, and its `-o key=value` overrides.

PaddleClas loads the YAML with PyYAML's SafeLoader, then turns every string value of a mapping that is a Python
literal into that literal (so `weight_decay: 1e-4`, which YAML reads as a string, becomes 0.0001; strings inside
lists stay strings). An override `-o A.b.0.c=v` walks mappings by key and lists by index, creates missing mapping
keys, and evaluates `v` (PaddleClas uses `eval`; kdjax `ast.literal_eval`, so `v` is a literal or stays a string).
"""

import ast
import copy
from typing import Any, List, Sequence, Tuple

from kdjax.config.paddleclas.context import YamlError

OVERRIDE_SEPARATOR = ",-o,"  # configs/paddleclas.py:PATH.yaml,-o,Global.epochs=2,-o,...


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def _literal_strings(node):
    """PaddleClas' create_attr_dict: string values of mappings that are Python literals become those literals."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if isinstance(value, str):
                node[key] = _literal(value)
            else:
                _literal_strings(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _literal_strings(item)
    return node


def load_yaml(path: str) -> dict:
    """The YAML at `path` as PaddleClas reads it (FileNotFoundError when it does not exist)."""
    import yaml

    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise YamlError(path, "(file)", f"is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise YamlError(path, "(file)", f"must hold a mapping of sections (Global, Arch, Loss, ...), got "
                                        f"{type(data).__name__}")
    return _literal_strings(data)


def apply_overrides(config: dict, overrides: Sequence[str], yaml_file: str = "") -> dict:
    """A copy of `config` with PaddleClas `-o KEY=VALUE` overrides applied in order."""
    config = copy.deepcopy(config)
    for option in overrides:
        if "=" not in option:
            raise YamlError(yaml_file, option, "an override must be KEY=VALUE, e.g. Global.epochs=2")
        key, value = option.split("=", 1)
        keys = key.strip().split(".")
        if not all(keys):
            raise YamlError(yaml_file, key, "an override key is a dotted path such as Arch.models.0.Teacher.name")
        _override(config, keys, _literal(value.strip()), yaml_file, key)
    return config


def _override(node, keys: List[str], value, yaml_file: str, full_key: str):
    head, rest = keys[0], keys[1:]
    if isinstance(node, list):
        index = _literal(head)
        if not isinstance(index, int) or not -len(node) <= index < len(node):
            raise YamlError(yaml_file, full_key, f"{head!r} is not an index of this list ({len(node)} items)")
        if rest:
            _override(node[index], rest, value, yaml_file, full_key)
        else:
            node[index] = value
        return
    if not isinstance(node, dict):
        raise YamlError(yaml_file, full_key, f"cannot descend into {node!r} at {head!r}")
    if not rest:
        node[head] = value
        return
    if node.get(head) is None:
        node[head] = {}
    _override(node[head], rest, value, yaml_file, full_key)


def parse_config_arg(arg: str) -> Tuple[str, List[str]]:
    """`PATH.yaml[,-o,KEY=VALUE]...` (the argument after `configs/paddleclas.py:`) → (path, overrides)."""
    parts = (arg or "").split(OVERRIDE_SEPARATOR)
    path = parts[0].strip()
    overrides = [p.strip() for p in parts[1:] if p.strip()]
    if path.startswith("-o,") or not path:
        raise YamlError("", "configs/paddleclas.py", "give the YAML first: --config=configs/paddleclas.py:PATH.yaml"
                                                     "[,-o,KEY=VALUE ...]")
    return path, overrides
