"""Flag definitions for kdjax's command-line entry points that tolerate being imported together.

Each entry point defines its flags at import time (absl style). Tests and tools import several entry points into
one process, where absl refuses a second flag of the same name (`workdir`, `config`, `overwrite`, ...). Across kdjax
such flags mean the same thing, so a repeated definition returns the flag that already exists.
"""

import difflib
import re
import sys

from absl import flags
from ml_collections import config_flags


class _Existing:
    """Stands in for the FlagHolder of a flag another kdjax module defined first."""

    def __init__(self, name: str):
        self.name = name

    @property
    def value(self):
        return flags.FLAGS[self.name].value


def _guarded(define):
    def define_once(name, *args, **kwargs):
        if name in flags.FLAGS:
            return _Existing(name)
        return define(name, *args, **kwargs)

    return define_once


DEFINE_string = _guarded(flags.DEFINE_string)
DEFINE_bool = _guarded(flags.DEFINE_bool)
DEFINE_integer = _guarded(flags.DEFINE_integer)
DEFINE_float = _guarded(flags.DEFINE_float)
DEFINE_enum = _guarded(flags.DEFINE_enum)
DEFINE_list = _guarded(flags.DEFINE_list)
DEFINE_multi_string = _guarded(flags.DEFINE_multi_string)
DEFINE_config_file = _guarded(config_flags.DEFINE_config_file)


# ---- flag errors: one line naming the flag or config field, no traceback ------------------------------------------

def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("Pass --help")]
    return lines[-1] if lines else text.strip()


def _load_config_file(argv):
    """The config `--config=path[:arg]` names, loaded outside absl (only to explain a bad override)."""
    import importlib.util

    value = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if not value:
        return None
    path, _, arg = value.partition(":")
    spec = importlib.util.spec_from_file_location("_kdjax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _missing_field(argv) -> str:
    """`config.a.b: no such field ...` for the first `--config.a.b=v` whose path the config does not define."""
    try:
        config = _load_config_file(argv)
    except Exception:  # noqa: BLE001
        config = None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config."):].split("=", 1)[0]
        node, walked = config, "config"
        for part in path.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else None
            if keys is None or part not in keys:
                close = difflib.get_close_matches(part, keys or [], n=1)
                hint = f" (did you mean {walked}.{close[0]}?)" if close else ""
                fields = f"; {walked} has: {', '.join(sorted(keys))}" if keys else ""
                return (f"config.{path}: no such config field{hint}{fields}. `--config.FIELD=VALUE` can only set "
                        f"fields the config file defines.")
            node, walked = node[part], f"{walked}.{part}"
    return ""


def _flag_error(text: str, argv) -> str:
    m = re.match(r"flag --config\.([^=\s]+)=(.*?): (.*)", text, re.S)
    if m and "Traceback" not in text:
        field, value, why = m.groups()
        current = ""
        try:
            node = flags.FLAGS["config"].value
            for part in field.split("."):
                node = node[part]
            current = f" (it is a {type(node).__name__}, now {node!r})"
        except Exception:  # noqa: BLE001
            pass
        return f"config.{field}: cannot set it to {value!r}{current}: {_last_line(why)}"
    head = text.strip().splitlines()[0] if text.strip() else text
    if "Traceback" in text:  # the config file raised: its own message is the last line
        flag = re.match(r"flag (--\S+?)(=|:)", head)
        return f"{flag.group(1) if flag else '--config'}: {_last_line(text)}"
    return _last_line(text) + " (see --help)"


def parse_flags(argv, prog: str):
    """absl's flag parsing, every problem reported as one line naming the flag or config field, exit code 2."""
    def fail(message):
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)

    from kdjax.cli.config_path import resolve_argv

    argv = resolve_argv(argv)  # configs/<name>.py from the installed package when not here (pip install .)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(_flag_error(str(e), argv))
    except (AttributeError, KeyError) as e:  # ml_collections: --config.a.b=v where the config has no a.b
        fail(_missing_field(argv) or f"a --config.FIELD override names a field the config does not have ({e})")
    except Exception as e:  # noqa: BLE001 - the config file itself failed to import or run
        fail(f"--config: the config file failed to load: {type(e).__name__}: {_last_line(str(e))}")


def help_text(prog: str, doc: str, flag_names) -> str:
    """`--help`: the command's description and its own flags with their help text and defaults."""
    lines = [f"usage: {prog} [flags]", "", (doc or "").strip(), "", "flags:"]
    for name in flag_names:
        flag = flags.FLAGS[name]
        default = "" if flag.default in (None, "") else f" (default: {flag.default!r})"
        if name == "config":
            default = ""
        lines.append(f"  --{name}: {flag.help}{default}")
    if "config" in flag_names:
        lines.append("  --config.FIELD=VALUE: override any field of the config, e.g. --config.optim.lr=0.05 "
                     "--config.losses.dkd.params.beta=2")
    return "\n".join(lines)


def config_overrides(name: str = "config") -> dict:
    """The `--config.FIELD=VALUE` overrides given on the command line, flattened ({"train.epochs": 2.0})."""
    try:
        return dict(flags.FLAGS[name].override_values)
    except (KeyError, AttributeError):
        return {}


def load_config(holder):
    """The ConfigDict a `--config` flag holds; a config file that failed to load, or none given, is a ConfigError."""
    from kdjax.errors import ConfigError

    try:
        config = holder.value
        if config is not None:
            config.get("models")  # ml_collections defers a failed config-file load to the first access
    except Exception as e:  # noqa: BLE001
        raise ConfigError("", f"--config: {_last_line(str(e))}") from None
    if config is None:
        raise ConfigError("", "no --config given; e.g. --config=configs/dkd.py")
    return config
