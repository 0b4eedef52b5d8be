"""Flag definitions for kdjax's command-line entry points that tolerate being imported together.

Each entry point defines its flags at import time (absl style). Tests and tools import several entry points into
one process, where absl refuses a second flag of the same name (`workdir`, `config`, `overwrite`, ...). Across kdjax
such flags mean the same thing, so a repeated definition returns the flag that already exists.
"""

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
DEFINE_config_file = _guarded(config_flags.DEFINE_config_file)
