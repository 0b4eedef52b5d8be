"""The device-memory rule (kdjax/runtime/device_memory.py) and XLA's figures it reads (kdjax/runtime/compiled.py)."""

import jax
import jax.numpy as jnp
import pytest

from kdjax.config.defaults import base_config
from kdjax.errors import ConfigError
from kdjax.runtime import compiled
from kdjax.runtime.device_memory import ENV_LIMIT, MARGIN, check_fits, free_bytes

MIB = 2 ** 20


def _config(batch=64, accum=2):
    c = base_config()
    with c.unlocked():
        c.train.batch_size, c.train.grad_accum_steps = batch, accum
    return c


def test_a_step_over_the_margin_is_refused_naming_batch_size_and_accumulation(monkeypatch):
    mem = compiled.Memory(arguments=100 * MIB, outputs=10 * MIB, aliased=10 * MIB, temporaries=800 * MIB, code=0)
    monkeypatch.setenv(ENV_LIMIT, str(1000 * MIB))
    assert free_bytes() == (1000 * MIB, f"${ENV_LIMIT}")
    check_fits(mem, _config(), arguments_resident=False)   # 900 MiB <= 90% of 1000 MiB
    monkeypatch.setenv(ENV_LIMIT, str(999 * MIB))           # 900 MiB > 899.1 MiB
    with pytest.raises(ConfigError) as e:
        check_fits(mem, _config(), arguments_resident=False)
    assert e.value.field == "train.batch_size"
    assert "train.grad_accum_steps (now 2" in str(e.value) and "train.batch_size (now 64)" in str(e.value)
    # arguments already on the device (the first training step): only what the step adds must fit in what is free
    check_fits(mem, _config(), arguments_resident=True)


def test_free_memory_on_cpu_is_the_hosts_available_memory(monkeypatch):
    monkeypatch.delenv(ENV_LIMIT, raising=False)
    free, source = free_bytes()
    assert jax.default_backend() != "cpu" or ("MemAvailable" in source and free > 0)
    assert 0 < MARGIN < 1


def test_xla_memory_and_flops_of_a_compiled_function():
    """memory(): arguments + outputs - aliased + temporaries; cost(): XLA's FLOPs of a matmul are 2·m·n·k."""
    a = jax.ShapeDtypeStruct((64, 128), jnp.float32)
    b = jax.ShapeDtypeStruct((128, 32), jnp.float32)
    exe = jax.jit(lambda x, y: jnp.tanh(x @ y)).lower(a, b).compile()
    mem = compiled.memory(exe)
    assert mem.arguments == (64 * 128 + 128 * 32) * 4 and mem.outputs == 64 * 32 * 4
    assert mem.total == mem.arguments + mem.outputs - mem.aliased + mem.temporaries + mem.code
    assert compiled.cost(exe)["flops"] >= 2 * 64 * 128 * 32


def test_collectives_are_parsed_from_compiled_text():
    text = """
  %all-gather.3 = f32[56,2,2,64]{3,2,1,0} all-gather(%x), channel_id=1, dimensions={0}
  %ags = (f32[7,4]{1,0}, f32[56,4]{1,0}) all-gather-start(%y), channel_id=4, dimensions={0}
  %agd = f32[56,4]{1,0} all-gather-done(%ags)
  %all-reduce-start.1 = (f32[32]{0}, f32[32]{0}) all-reduce-start(%a, %b), channel_id=2
  %all-reduce-done.1 = (f32[32]{0}, f32[32]{0}) all-reduce-done(%all-reduce-start.1)
  %ar = (f32[3,3,8,16]{3,2,1,0}, f32[]) all-reduce(%g, %h), channel_id=3
  %add = f32[4]{0} add(%p, %q)
"""
    found = compiled.collectives(text)
    assert [c.op for c in found] == ["all-gather", "all-gather", "all-reduce", "all-reduce"]
    assert found[0].bytes == 56 * 2 * 2 * 64 * 4
    assert found[1].shapes == (("f32", (56, 4)),)  # an async pair: its start's result, once
    assert found[2].bytes == 2 * 32 * 4
    assert found[3].bytes == (3 * 3 * 8 * 16 + 1) * 4
    assert compiled.count_collectives(text)["all-reduce"] == 2
