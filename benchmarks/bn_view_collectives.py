"""Issue 15's closing figure: activation all-gathers in the compiled train and eval steps of the default, dkd:cifar100
and afd configs on 8 simulated CPU devices (data=8 and data=2 x fsdp=4; batch 56 = 8 x 7, 12x12 images, as in
tests/e2e/test_sharding_hlo.py), with the zoo BatchNorm's former column-sum view (rows of k pixels where k divides
N*H*W only, so a row could straddle two samples) and with the current one (k divides H*W). One JSON line each.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu python benchmarks/bn_view_collectives.py
"""
import json, math, os, sys, tempfile
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO); sys.path.insert(0, os.path.join(REPO, "tests"))
import jax, jax.numpy as jnp
from jax import lax
from conftest import load_config
from kdjax.data.sources import DatasetInfo
from kdjax.models import layers
from kdjax.runtime import compiled
from kdjax.tools import lowering
from kdjax.trainer import Trainer

new_sum = layers._channel_sum

def old_sum(a, materialize=False):  # the former _channel_sum of kdjax/models/layers.py (before issue 15)
    if materialize:
        a = lax.optimization_barrier(a)
    c = a.shape[-1]
    m = a.size // c
    k = max(d for d in range(1, max(1, 1024 // c) + 1) if m % d == 0)
    return jnp.sum(jnp.sum(a.reshape(m // k, k * c), axis=0).reshape(k, c), axis=0)

def per_sample(x):
    return any(math.prod(s) % 7 == 0 and math.prod(s) for _, s in x.shapes)

cases = {"default": ("configs/dkd.py", None, (12, 12, 1)), "dkd_cifar100": ("configs/dkd.py", "cifar100", (12, 12, 3)),
         "afd": ("configs/afd.py", None, (12, 12, 1))}
for label, fn in (("before", old_sum), ("after", new_sum)):
    layers._channel_sum = fn
    for case, (path, preset, shape) in cases.items():
        for data, fsdp in ((8, 1), (2, 4)):
            c = load_config(path, preset)
            with c.unlocked():
                c.mesh.data, c.mesh.fsdp, c.mesh.fsdp_min_size = data, fsdp, 0
                c.train.batch_size = c.train.eval_batch_size = 56
                c.kernels = "cpu_tuned"
                for m in c.models.values():
                    m.init = ""
            info = DatasetInfo(int(c.data.num_classes or 10), None, tuple(shape), "synthetic")
            tr = Trainer(c, tempfile.mkdtemp(), None, None, info, "hlo")
            row = {}
            for kind, low in (("train", lowering.lower_train_step(tr)), ("eval", lowering.lower_eval_step(tr))):
                cs = compiled.collectives(low.compile({"xla_backend_optimization_level": 0}).as_text())
                bad = [x for x in cs if x.op in ("all-gather", "all-to-all") and per_sample(x)]
                row[kind] = dict(activation_gathers=len(bad), gathered_bytes=sum(x.bytes for x in bad),
                                 all_reduces=sum(x.op == "all-reduce" for x in cs), bytes=sum(x.bytes for x in cs))
            print(json.dumps(dict(bn=label, case=case, mesh=f"data{data}xfsdp{fsdp}", **row)), flush=True)
