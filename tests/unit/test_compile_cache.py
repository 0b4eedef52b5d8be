"""kdjax/runtime/cache_dir.py: JAX's persistent compilation cache goes to <KDJAX_CACHE>/xla unless the user chose
otherwise, and a second process loads the executable the first one compiled (same result, no recompilation)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = r"""
import json, sys, time
import kdjax.runtime.xla_flags  # noqa: F401  (what kdjax's entry points import before jax)
import jax, jax.numpy as jnp
from jax._src import compiler
hits = []
original = compiler._cache_read
def counting_read(*args, **kwargs):
    found = original(*args, **kwargs)
    hits.append(found is not None and found[0] is not None)
    return found
compiler._cache_read = counting_read
x = jnp.arange(64 * 64, dtype=jnp.float32).reshape(64, 64) / 4096
f = jax.jit(lambda a: jnp.tanh(a @ a.T @ a).sum(axis=0))
y = f(x)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "max": jax.config.jax_compilation_cache_max_size,
                  "hit": any(hits), "y": [float(v) for v in y[:4]]}))
"""


def _probe(env_changes, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "KDJAX_COMPILE_CACHE",
                                                            "JAX_COMPILATION_CACHE_MAX_SIZE")}
    env.update(env_changes, PYTHONPATH=REPO, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, cwd=str(tmp_path),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_compiled_executable(tmp_path):
    cache = tmp_path / "cache"
    first = _probe({"KDJAX_CACHE": str(cache)}, tmp_path)
    assert first["dir"] == str(cache / "xla") and first["max"] == 2 * 1024 ** 3 and not first["hit"]
    assert any(name.startswith("jit_") for name in os.listdir(cache / "xla"))
    second = _probe({"KDJAX_CACHE": str(cache)}, tmp_path)
    assert second["hit"] and second["y"] == first["y"]


@pytest.mark.parametrize("env,expected", [
    ({"KDJAX_COMPILE_CACHE": "0"}, None),
    ({"KDJAX_CACHE": "off"}, None),
    ({"JAX_COMPILATION_CACHE_DIR": "{tmp}/mine"}, "{tmp}/mine"),
])
def test_the_users_choice_wins(tmp_path, env, expected):
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    env.setdefault("KDJAX_CACHE", str(tmp_path / "cache"))
    got = _probe(env, tmp_path)
    assert got["dir"] == (expected.format(tmp=tmp_path) if expected else None)
    assert not os.path.exists(tmp_path / "cache" / "xla")
