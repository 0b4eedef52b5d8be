"""What the compiled multi-device program moves between devices (issue 15): read from the HLO, not from values.

The train and eval steps of three configs — the default (DKD on small CNNs with flax's BatchNorm), DKD's CIFAR-100
recipe (resnet32x4 → resnet8x4, the zoo's BatchNorm with its hand-written backward pass) and AFD (loss-side heads
with batch-statistics BatchNorm) — are compiled, not run, on 8 simulated CPU devices for a `data=8` mesh and a
`data=2, fsdp=4` mesh (fsdp_min_size=0: every parameter with an axis divisible by 4 is split). One subprocess
compiles all twelve programs (`kdjax.tools.lowering`: the same step functions, shardings and jit signatures
training uses, built from shapes alone); the tests read its report.

How an activation is recognised: the batch is 56 = 8 × 7 and no parameter, optimizer or frozen-model array has an
element count divisible by 7 (asserted). Every array holding one value per sample (activations, their gradients,
logits) keeps at least one device's 7 samples, so its element count is divisible by the prime 7, whatever XLA
reshapes or transposes it to; any all-gather or all-to-all whose result has such an element count carries
per-sample data. Images are 12×12 so that the ResNet's 6×6 and 3×3 maps have rows of the BatchNorm's 2-D view that
straddle two samples unless the view keeps them apart (what made GSPMD gather whole activations).
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

BATCH = 56  # 8 × 7: see the module docstring
CASES = {  # name: (config path, preset, image shape)
    "default": ("configs/dkd.py", None, (12, 12, 1)),
    "dkd_cifar100": ("configs/dkd.py", "cifar100", (12, 12, 3)),
    "afd": ("configs/afd.py", None, (12, 12, 1)),
}
MESHES = {"data8": (8, 1), "data2_fsdp4": (2, 4)}

_SCRIPT = r"""
import json, math, os, sys, tempfile
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
import jax
from conftest import load_config
from kdjax.data.sources import DatasetInfo
from kdjax.runtime import compiled
from kdjax.tools import lowering
from kdjax.steps import build_optimizer
from kdjax.trainer import Trainer

OPTIONS = {{"xla_backend_optimization_level": 0}}  # collectives come from HLO passes; skip LLVM's optimisation
nbytes = lambda tree: sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(tree))
report = {{}}
for case, (path, preset, shape) in json.loads({cases!r}).items():
    for mesh_name, (data, fsdp) in json.loads({meshes!r}).items():
        c = load_config(path, preset)
        with c.unlocked():
            c.mesh.data, c.mesh.fsdp, c.mesh.fsdp_min_size = data, fsdp, 0
            c.train.batch_size = c.train.eval_batch_size = {batch}
            for m in c.models.values():
                m.init = ""
        info = DatasetInfo(int(c.data.num_classes or 10), None, tuple(shape), "synthetic")
        trainer = Trainer(c, tempfile.mkdtemp(), None, None, info, "hlo")
        tx, _ = build_optimizer(c.optim, 1, 1)
        state, frozen = lowering.abstract_state(trainer, tx)
        arrays = jax.tree.leaves((state, frozen))
        out = dict(
            trainable_bytes=nbytes(state.params), frozen_bytes=nbytes(frozen),
            batch_norms=sum(1 for p, _ in jax.tree_util.tree_leaves_with_path(state.batch_stats)
                            if jax.tree_util.keystr(p).endswith("['mean']")),
            sizes_divisible_by_7=[list(a.shape) for a in arrays if a.size and a.size % 7 == 0])
        for kind, lowered in (("train", lowering.lower_train_step(trainer)),
                              ("eval", lowering.lower_eval_step(trainer))):
            text = lowered.compile(OPTIONS).as_text()
            out[kind] = [dict(op=x.op, shapes=[[d, list(s)] for d, s in x.shapes], bytes=x.bytes, line=x.line[:400])
                         for x in compiled.collectives(text)]
        report[case + "/" + mesh_name] = out
        print(case, mesh_name, file=sys.stderr, flush=True)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def report():
    code = _SCRIPT.format(repo=REPO, tests=os.path.join(REPO, "tests"), batch=BATCH, cases=json.dumps(CASES),
                          meshes=json.dumps(MESHES))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


IDS = [f"{c}/{m}" for c in CASES for m in MESHES]


def _per_sample(collective) -> bool:
    """Whether a collective's result holds per-sample data (an element count divisible by 7, module docstring)."""
    for _, shape in collective["shapes"]:
        n = 1
        for d in shape:
            n *= d
        if n and n % 7 == 0:
            return True
    return False


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("kind", ["train", "eval"])
def test_no_all_gather_or_all_to_all_carries_per_sample_data(report, case, kind):
    r = report[case]
    assert r["sizes_divisible_by_7"] == [], "the test's premise: no parameter has an element count divisible by 7"
    moved = [c for c in r[kind] if c["op"] in ("all-gather", "all-to-all") and _per_sample(c)]
    assert moved == [], "\n".join(f"{c['op']} {c['shapes']}: {c['line']}" for c in moved)


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("kind", ["train", "eval"])
def test_collective_bytes_are_what_the_parameters_need(report, case, kind):
    """Bytes of every collective's result on one device, summed over the step, are bounded by

      train: G·(|frozen| + |trainable|) + |trainable| + 16 KiB per BatchNorm + 64 KiB
      eval:  G·(|frozen| + |trainable|) + 64 KiB

    with G = 1 under fsdp (each sharded parameter is gathered whole once per step: `Parallel.gather_params`,
    ZeRO-3) and 0 without it (parameters are replicated), |trainable| counting the learnable loss heads too.
    The gradient is all-reduced once (|trainable|). A BatchNorm in training mode all-reduces per-channel partial
    sums, two forward and two backward, of at most 1024 floats each (16 KiB; `kdjax/models/layers.py`
    `_channel_sum`); losses and metrics add a few scalars. Nothing in the bound grows with the batch: a step that
    moved activations between devices would exceed it as soon as the batch is large (and fails the test above)."""
    r = report[case]
    gathered = r["frozen_bytes"] + r["trainable_bytes"] if case.endswith("fsdp4") else 0
    bound = gathered + 64 * 1024
    if kind == "train":
        bound += r["trainable_bytes"] + 16 * 1024 * r["batch_norms"]
    moved = sum(c["bytes"] for c in r[kind])
    biggest = sorted(r[kind], key=lambda c: -c["bytes"])[:5]
    assert moved <= bound, f"{moved} > {bound} bytes; largest: " + "; ".join(
        f"{c['op']} {c['shapes']} ({c['bytes']} B)" for c in biggest)
    if kind == "train":  # and the gradient is in fact reduced across devices
        assert moved >= r["trainable_bytes"]
