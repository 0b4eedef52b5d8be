"""Scale-out: 8 simulated devices (data and data × fsdp meshes), two processes over loopback (jax.distributed),
teacher-output caching, bf16 compute, and gradient accumulation (on one and on eight devices).

Every training run is the same tiny KD job (256 Fashion-MNIST images, batch 32, augment 'none', a frozen
random-init teacher) stopped after 3 steps with a checkpoint (`train.stop_after_steps`); each run's checkpoint is
restored in this single-device process and compared with the one-device run. The runs start together as
subprocesses, so the module costs about one run's start-up plus their compute on the available cores.
"""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_config, tiny

STEPS = 3  # steps each run trains before it checkpoints and stops
RTOL, ATOL = 2e-4, 2e-5

_RUN = r"""
import json, sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r}); sys.path.insert(0, {tests!r} + "/e2e")
import jax
from kdjax import trainer as phase_lib, train
import test_multi_device
seen = {{}}
build = phase_lib.Trainer.build_train_step
def recording(self, *a, **k):
    step, state, frozen = out = build(self, *a, **k)
    count = lambda t: sum(not x.sharding.is_fully_replicated for x in jax.tree.leaves(t))
    seen.update(params_sharded=count(state.params), opt_sharded=count(state.opt_state), frozen_sharded=count(frozen),
                leaves=len(jax.tree.leaves(state.params)))
    return out
phase_lib.Trainer.build_train_step = recording
result = train.run(test_multi_device.config({teacher!r}, **json.loads({overrides!r})), {workdir!r})
print(json.dumps(dict(seen, devices=jax.device_count(), result=result)))
"""


_PREEMPT = r"""
import json, os, signal, sys
sys.path.insert(0, {repo!r})
pid = int(sys.argv[1])
from kdjax.runtime import distributed
distributed.initialize("127.0.0.1:{port}", 2, pid)
from kdjax.runtime.preemption import Preemption as _Preemption
seen = []
with _Preemption() as preempt:
    if pid == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # only process 1 is told to stop
    for step in range(1, 21):
        preempt.agree(step)
        seen.append(preempt.requested)
        if preempt.requested:
            break
print(json.dumps({{"pid": pid, "stopped_at": len(seen), "requested": preempt.requested}}))
"""


def config(teacher: str, **overrides):
    """The tiny KD job every run trains: `overrides` are dotted config paths → values."""
    c = tiny(load_config("configs/kd.py"), train_limit=256, test_limit=64, batch=32, epochs=0.5)
    with c.unlocked():
        c.models.Teacher.arch = "convnet_student"  # small and fast; random weights are fine for equivalence
        c.models.Teacher.init = teacher
        c.data.augment = "none"
        c.train.log_every_steps = 1
        c.train.checkpoint_every_steps = 100
        c.train.eval_batch_size = 64
        c.train.stop_after_steps = STEPS
        for path, value in overrides.items():
            *parents, leaf = path.split(".")
            node = c
            for p in parents:
                node = node[p]
            node[leaf] = value
    return c


def _env(devices: int):
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")


def _start(teacher: str, workdir, devices: int, overrides: dict):
    code = _RUN.format(repo=REPO, tests=os.path.join(REPO, "tests"), teacher=teacher,
                       overrides=json.dumps(overrides), workdir=str(workdir))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(devices), cwd=REPO)


def _cli_args(teacher: str, workdir, **overrides):
    """The same job as `config(teacher, **overrides)`, as kdjax.main flags."""
    c = config(teacher, **overrides)
    flat = {"models.Teacher.arch": c.models.Teacher.arch, "models.Teacher.init": teacher}
    flat.update({f"data.{k}": c.data[k] for k in ("train_limit", "test_limit", "augment")})
    flat.update({f"train.{k}": c.train[k] for k in ("batch_size", "epochs", "log_every_steps",
                                                   "checkpoint_every_steps", "eval_batch_size", "stop_after_steps")})
    flat.update(overrides)
    return ["--config=configs/kd.py", f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in flat.items()]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_teacher(directory: str):
    import jax
    import jax.numpy as jnp

    from kdjax.weights import export_dir as export
    from kdjax.models import get_model

    module = get_model("convnet_student", field="teacher", num_classes=10)
    variables = module.init(jax.random.PRNGKey(7), jnp.zeros((1, 28, 28, 1)), train=False)
    variables = {k: variables[k] for k in ("params", "batch_stats")}
    export.save_export(directory, variables, export.make_spec("convnet_student", {}, 10, (28, 28, 1), (0.286,),
                                                              (0.353,)))
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts every scale-out run at once; returns {name: (workdir, report)} once all have finished."""
    from kdjax.tools.cache_teacher import build_cache

    root = tmp_path_factory.mktemp("scale")
    teacher = _make_teacher(str(root / "teacher"))
    cache_dir = str(root / "teacher_cache")
    build_cache(config(teacher), cache_dir)
    fsdp = {"mesh.data": 2, "mesh.fsdp": 4, "mesh.fsdp_min_size": 0}
    jobs = {
        "one": _start(teacher, root / "one", 1, {}),
        "data8": _start(teacher, root / "data8", 8, {}),
        "fsdp8": _start(teacher, root / "fsdp8", 8, fsdp),
        "cache": _start(teacher, root / "cache", 1, {"teacher_cache": cache_dir}),
        "bf16": _start(teacher, root / "bf16", 1, {"precision": "bfloat16"}),
        "accum": _start(teacher, root / "accum", 1, {"train.grad_accum_steps": 2}),
        "accum8": _start(teacher, root / "accum8", 8, {"train.grad_accum_steps": 2}),
    }
    # two processes of one CPU device each, through the CLI and the loopback launcher; params sharded across them
    mp_args = _cli_args(teacher, root / "two_proc", **{"mesh.data": 1, "mesh.fsdp": 2, "mesh.fsdp_min_size": 0})
    jobs["two_proc"] = subprocess.Popen(
        ["bash", os.path.join(REPO, "launch", "local_multiprocess.sh"), "-n", "2", "--cpu-devices", "1",
         "--python", sys.executable, "--logdir", str(root / "mp_logs"), "--"] + mp_args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=dict(os.environ, KDJAX_STOP_GRACE="10"))
    # the CLI, top-3 logits only
    jobs["cli_topk"] = subprocess.Popen(
        [sys.executable, "-m", "kdjax.tools.cache_teacher", "--config=configs/kd.py",
         "--config.models.Teacher.arch=convnet_student", f"--config.models.Teacher.init={teacher}",
         "--config.data.train_limit=256", "--config.data.augment=none", f"--output={root / 'topk_cache'}",
         "--top_k=3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=_env(1))
    port = _free_port()
    for pid in (0, 1):
        jobs[f"preempt{pid}"] = subprocess.Popen(
            [sys.executable, "-c", _PREEMPT.format(repo=REPO, port=port), str(pid)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=REPO, env=_env(1))
    out = {"root": root}
    for name, proc in jobs.items():
        try:
            stdout, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            logs = ""
            if name == "two_proc" and (root / "mp_logs" / "process_1.log").is_file():
                logs = "\nprocess 1:\n" + (root / "mp_logs" / "process_1.log").read_text()[-3000:]
            pytest.fail(f"run {name} failed ({proc.returncode}):\n{stderr[-4000:]}{logs}")
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        out[name] = (root / name, json.loads(lines[-1]) if lines else {"stdout": stdout})
    out["teacher"], out["cache_dir"] = teacher, cache_dir
    return out


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]


_RESTORED = {}


def _restore(runs, name, **overrides):
    """The checkpointed TrainState of run `name`, restored here (one process, one device) as numpy."""
    if name not in _RESTORED:
        import jax

        from kdjax.data.sources import open_source
        from kdjax.trainer import Trainer

        cfg = config(runs["teacher"], **overrides)
        src, info = open_source(cfg.data, "test")
        state, _, step = Trainer(cfg, str(runs[name][0]), src, src, info, "check").restore_latest()
        assert step == STEPS
        _RESTORED[name] = jax.tree.map(np.asarray, jax.device_get({"params": state.params,
                                                                   "batch_stats": state.batch_stats,
                                                                   "opt_state": state.opt_state}))
    return _RESTORED[name]


def _assert_same_state(a, b, rtol=RTOL, atol=ATOL):
    import jax

    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def test_every_run_stopped_with_a_checkpoint(runs):
    for name in ("one", "data8", "fsdp8", "cache", "bf16", "accum", "accum8", "two_proc"):
        wd, report = runs[name]
        assert os.path.isdir(os.path.join(wd, "checkpoints", str(STEPS))), name
        assert len(_losses(wd)) == STEPS, name
        if "result" in report:
            assert report["result"] == {"preempted": True, "step": STEPS}, name
    assert runs["one"][1]["devices"] == 1 and runs["data8"][1]["devices"] == 8


# Across meshes the state after STEPS steps agrees to float rounding amplified by ReLU / max-pool kinks, not to
# float rounding itself (measured with benchmarks/mesh_rounding.py: first step, same state and batch). One device
# sums each BatchNorm statistic over all 32·14·14 rows in float32; 8 devices sum 1/8 each and all-reduce, which is
# closer to float64 (normalised stem activations 4.5e-5 from float64 on 1 device, 3.3e-6 on 8). A pre-activation
# within that of 0 (one in stage0: +4.0e-6 on 1 device, <= 0 in float64 and on 8 devices) becomes the only
# non-zero of its 2x2 pool window and takes that window's gradient, so the 1-device step-1 gradient of stage0/stem
# differs by up to 9.1e-3 of the leaf's largest value (8 devices: 1.2e-6 from float64); three steps on, params and
# batch_stats differ by up to 2.8e-2 of their leaf's largest value, the momentum traces (raw gradients) by 7.5e-2,
# while the losses still agree to 6e-5. A semantic difference (statistics of a device's shard, another batch,
# gradients not all-reduced) moves the losses well beyond RTOL from step 1 on, and a mis-assembled shard moves a
# leaf by O(its largest value); both stay caught. Bounds below: about 3x the measured amplification.
MESH_STATE_TOL = {"params": 0.1, "batch_stats": 0.1, "opt_state": 0.25}


def _assert_same_state_across_meshes(a, b):
    import jax

    for group, tol in MESH_STATE_TOL.items():
        la, lb = jax.tree_util.tree_leaves_with_path(a[group]), jax.tree_util.tree_leaves_with_path(b[group])
        assert [p for p, _ in la] == [p for p, _ in lb]
        for (path, x), (_, y) in zip(la, lb):
            if not np.issubdtype(np.asarray(y).dtype, np.floating):
                np.testing.assert_array_equal(x, y, err_msg=group + jax.tree_util.keystr(path))
                continue
            bound = tol * np.abs(y).max() + ATOL
            assert np.abs(x - y).max() <= bound, (group + jax.tree_util.keystr(path), np.abs(x - y).max(), bound)


@pytest.mark.parametrize("name", ["data8", "fsdp8"])
def test_eight_devices_match_one_device(runs, name):
    """The losses agree to RTOL at every step (the first one, a forward pass on the same state, far tighter); the
    checkpointed state to the kink-amplified rounding measured above."""
    eight, one = _losses(runs[name][0]), _losses(runs["one"][0])
    np.testing.assert_allclose(eight[0], one[0], rtol=1e-5)
    np.testing.assert_allclose(eight, one, rtol=RTOL)
    _assert_same_state_across_meshes(_restore(runs, name), _restore(runs, "one"))


def test_fsdp_shards_params_optimizer_state_and_frozen_teacher(runs):
    data8, fsdp8 = runs["data8"][1], runs["fsdp8"][1]
    assert data8["params_sharded"] == data8["opt_sharded"] == data8["frozen_sharded"] == 0
    # with fsdp_min_size=0 every array with an axis divisible by 4 is split (the 1-channel stem is not)
    assert 0 < fsdp8["params_sharded"] <= fsdp8["leaves"]
    assert fsdp8["opt_sharded"] == fsdp8["params_sharded"]  # momentum follows its parameter
    assert fsdp8["frozen_sharded"] > 0


def test_two_processes_match_one_and_their_checkpoint_restores_in_one(runs):
    """kdjax.main with --coordinator_address/--num_processes/--process_id (launch/local_multiprocess.sh), params
    sharded across the two processes; the checkpoint both wrote restores here, in one process."""
    wd = runs["two_proc"][0]
    np.testing.assert_allclose(_losses(wd), _losses(runs["one"][0]), rtol=RTOL)
    _assert_same_state_across_meshes(_restore(runs, "two_proc"), _restore(runs, "one"))  # batch split in 2
    assert not os.path.exists(os.path.join(wd, "metrics.jsonl.1"))
    with open(os.path.join(wd, "metrics.jsonl")) as f:  # written by process 0 only: one record per step
        assert [r["step"] for r in map(json.loads, f) if r["kind"] == "train"] == list(range(1, STEPS + 1))
    process_1 = (runs["root"] / "mp_logs" / "process_1.log").read_text()
    assert "step/s" not in process_1 and "resuming" not in process_1  # no progress bar, no messages


def test_a_sigterm_on_one_host_stops_every_host_at_the_same_step(runs):
    """SIGTERM reaches only process 1; both processes agree (at step 10) and stop together, none deadlocks."""
    reports = [runs[f"preempt{pid}"][1] for pid in (0, 1)]
    assert [r["stopped_at"] for r in reports] == [10, 10] and all(r["requested"] for r in reports)


def test_teacher_cache_trains_the_same_student(runs):
    np.testing.assert_allclose(_losses(runs["cache"][0]), _losses(runs["one"][0]), rtol=RTOL)
    _assert_same_state(_restore(runs, "cache", teacher_cache=runs["cache_dir"]), _restore(runs, "one"))


def test_bf16_trains_like_float32_within_bf16_rounding(runs):
    """bf16 compute, float32 master state: the losses of the first steps follow the float32 run to within bf16's
    precision (8 significant bits: ~0.4% per rounding, a few roundings deep), and the checkpoint is float32."""
    losses = _losses(runs["bf16"][0])
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, _losses(runs["one"][0]), rtol=1e-2)
    state = _restore(runs, "bf16", precision="bfloat16")
    import jax

    assert {a.dtype for a in jax.tree.leaves(state)} <= {np.dtype(np.float32), np.dtype(np.int32)}


def test_grad_accumulation_on_eight_devices_matches_one_device(runs):
    """2 micro-batches through the real loop: micro-batch j takes rows j, j+2, ... of the global batch whatever the
    devices, so 8 devices (each micro-batch split over all of them, BatchNorm statistics all-reduced) compute
    what one device computes, to float rounding. (Accumulation against the full batch: tests/unit/
    test_grad_accumulation.py, and the BatchNorm semantics below.)"""
    np.testing.assert_allclose(_losses(runs["accum8"][0]), _losses(runs["accum"][0]), rtol=RTOL)
    accum = {"train.grad_accum_steps": 2}
    _assert_same_state(_restore(runs, "accum8", **accum), _restore(runs, "accum", **accum))


# ---- the step itself: mixed precision and gradient accumulation -------------------------------------------------

@functools.lru_cache(maxsize=None)
def _mlp_step(dtype="float32", accum=1, batch_norm=False, momentum=0.9):
    """A BN-free (or BN) student and frozen teacher on 8×8 images, KD + CE, SGD with momentum (built once)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from kdjax.models.distillation import DistillationModel, SubModel
    from kdjax.config.defaults import loss_entry
    from kdjax.losses import build_losses
    from kdjax.runtime.mesh import make_parallel
    from kdjax.steps import create_state, make_train_step

    class MLP(nn.Module):
        width: int = 32

        @nn.compact
        def __call__(self, x, train=False):
            x = x.reshape((x.shape[0], -1))
            x = nn.Dense(self.width)(x)
            if batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            return nn.Dense(10)(nn.relu(x))

    subs = {"Student": SubModel("Student", "mlp", {}, MLP(), False, "", ()),
            "Teacher": SubModel("Teacher", "mlp", {}, MLP(64), True, "x", ())}
    model = DistillationModel(subs)
    losses = build_losses([loss_entry("gt_ce", 1.0, models=["Student"]),
                           loss_entry("kd", 0.9, pairs=[["Student", "Teacher"]], temperature=4.0)])
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, (32,)).astype(np.int32)
    par = make_parallel()  # the trainer's init path: shapes → shardings → one jitted init
    variables, _ = par.init_sharded(model.init_variables, jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
    params = {"Student": variables["Student"]["params"]}
    stats = {"Student": variables["Student"]["batch_stats"]} if batch_norm else {}
    frozen = {"Teacher": variables["Teacher"]}
    tx = optax.sgd(0.1, momentum=momentum or None)
    step = make_train_step(model, losses, tx, lambda s: 0.1, mean=(0.5,), std=(0.25,), steps_per_epoch=10,
                           compute_dtype=jnp.dtype(dtype), grad_accum_steps=accum)
    state, _ = par.init_sharded(lambda p, b: create_state(p, b, tx, losses), params, stats)
    return jax.jit(step), state, frozen, {"image": images, "label": labels}


def test_grad_accumulation_equals_the_full_batch_without_batchnorm():
    import jax

    results = {}
    for accum in (1, 4):
        step, state, frozen, batch = _mlp_step(accum=accum)
        for _ in range(2):
            state, metrics = step(state, frozen, batch, jax.random.PRNGKey(0))
        results[accum] = (jax.device_get(state.params), jax.device_get(metrics))
    (p1, m1), (p4, m4) = results[1], results[4]
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
    np.testing.assert_allclose(m4["top1/Student"], m1["top1/Student"], rtol=1e-6)
    _assert_same_state(p4, p1, rtol=1e-5, atol=1e-6)


def test_grad_accumulation_updates_batchnorm_statistics_per_micro_batch():
    import jax

    step, state, frozen, batch = _mlp_step(accum=4, batch_norm=True)
    new, _ = step(state, frozen, batch, jax.random.PRNGKey(0))
    old_mean = np.asarray(state.batch_stats["Student"]["BatchNorm_0"]["mean"])
    new_mean = np.asarray(new.batch_stats["Student"]["BatchNorm_0"]["mean"])
    assert not np.allclose(new_mean, old_mean)  # four momentum updates applied in sequence
    full, _ = _mlp_step(accum=1, batch_norm=True)[0](state, frozen, batch, jax.random.PRNGKey(0))
    one_update = np.asarray(full.batch_stats["Student"]["BatchNorm_0"]["mean"])
    assert not np.allclose(new_mean, one_update)


def test_grad_accumulation_with_batchnorm_is_k_micro_batch_passes():
    """What accumulation means with BatchNorm (as in PyTorch): micro-batch j normalises with its own statistics, the
    running averages are updated micro-batch after micro-batch, and the update is the mean of the k micro-batch
    gradients — computed here independently by running the one-batch step on each micro-batch (plain SGD, so an
    update is -lr x gradient), with the running statistics carried from one to the next."""
    import jax

    from kdjax.steps import micro_batches

    step4, state, frozen, batch = _mlp_step(accum=4, batch_norm=True, momentum=0.0)
    step1 = _mlp_step(accum=1, batch_norm=True, momentum=0.0)[0]
    rng = jax.random.PRNGKey(0)
    new4, _ = step4(state, frozen, batch, rng)
    parts = jax.tree.map(np.asarray, micro_batches(batch, 4))
    stats, deltas = state.batch_stats, []
    for j in range(4):
        mb = jax.tree.map(lambda a: a[j], parts)
        # the micro-batch's own random stream (the step folds j into its keys) does not matter: no dropout here
        new1, _ = step1(state.replace(batch_stats=stats), frozen, mb, rng)
        deltas.append(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new1.params, state.params))
        stats = new1.batch_stats
    mean_delta = jax.tree.map(lambda *d: np.mean(d, axis=0), *deltas)
    delta4 = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new4.params, state.params)
    _assert_same_state(delta4, mean_delta, rtol=1e-5, atol=1e-7)
    _assert_same_state(new4.batch_stats, stats, rtol=1e-6, atol=1e-7)


def test_bf16_policy_computes_in_bf16_with_float32_params_and_losses():
    import jax

    step, state, frozen, batch = _mlp_step(dtype="bfloat16")
    jaxpr = str(jax.make_jaxpr(step)(state, frozen, batch, jax.random.PRNGKey(0)))
    assert "bf16[32,32]" in jaxpr and "bf16[32,10]" in jaxpr  # student and teacher layers run in bf16
    new, metrics = step(state, frozen, batch, jax.random.PRNGKey(0))
    assert all(np.asarray(v).dtype == np.float32 for v in jax.device_get(metrics).values())
    assert {a.dtype for a in jax.tree.leaves(new.params)} == {np.dtype(np.float32)}
    assert {a.dtype for a in jax.tree.leaves(new.opt_state)} <= {np.dtype(np.float32), np.dtype(np.int32)}
    f32_step = _mlp_step()[0]
    _, m32 = f32_step(state, frozen, batch, jax.random.PRNGKey(0))
    np.testing.assert_allclose(metrics["loss"], m32["loss"], rtol=2e-2)


# ---- shardings, mesh, distributed start-up: no devices needed ---------------------------------------------------

def test_fsdp_rule_shards_the_largest_divisible_axis_and_replicates_small_arrays():
    from jax.sharding import PartitionSpec as P

    from kdjax.runtime.mesh import fsdp_spec

    assert fsdp_spec((3, 3, 64, 128), 4, 0) == P(None, None, None, "fsdp")
    assert fsdp_spec((512, 10), 4, 0) == P("fsdp", None)
    assert fsdp_spec((3, 3, 1, 6), 4, 0) == P()           # nothing divisible by 4
    assert fsdp_spec((1024, 1024), 4, 2 ** 21) == P()     # below fsdp_min_size
    assert fsdp_spec((64,), 1, 0) == P()                  # fsdp == 1: replicated
    assert fsdp_spec((), 4, 0) == P()


def test_mesh_config_errors_name_the_field():
    import jax

    from kdjax.errors import ConfigError
    from kdjax.runtime.mesh import make_parallel

    n = jax.device_count()
    with pytest.raises(ConfigError, match=r"mesh\.fsdp"):
        make_parallel({"data": -1, "fsdp": n + 1})
    with pytest.raises(ConfigError, match=r"mesh\.data"):
        make_parallel({"data": n + 1, "fsdp": 1})
    with pytest.raises(ConfigError, match=r"train\.grad_accum_steps"):
        make_parallel({"data": -1, "fsdp": 1}, global_batch=6 * n, grad_accum_steps=4)
    par = make_parallel({"data": -1, "fsdp": 1}, global_batch=8 * n, grad_accum_steps=4)
    assert par.data_size == n and par.mesh.axis_names == ("data", "fsdp")


def test_distributed_plan_from_flags_env_tpu_and_slurm(monkeypatch):
    from kdjax.runtime import distributed
    from kdjax.runtime.distributed import FlagError

    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "KDJAX_COORDINATOR_ADDRESS",
                "KDJAX_NUM_PROCESSES", "KDJAX_PROCESS_ID", "SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distributed, "running_on_cloud_tpu", lambda: False)
    assert distributed.plan() is None  # one process: nothing to do
    assert distributed.plan("h:1", 2, 1) == {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1,
                                            "cluster_detection_method": "deactivate"}
    assert distributed.plan("h:1", 2, 0, "3")["local_device_ids"] == [3]
    assert distributed.plan("h:1", 1, 0) is None
    assert distributed.plan("h:1", 2, 1, mode="off") is None
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:8476")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed.plan()["process_id"] == 3
    with pytest.raises(FlagError, match="--process_id"):
        distributed.plan(process_id=4)
    monkeypatch.delenv("JAX_PROCESS_ID")
    with pytest.raises(FlagError, match="--process_id"):
        distributed.plan()
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
    monkeypatch.delenv("JAX_NUM_PROCESSES")
    monkeypatch.setattr(distributed, "running_on_cloud_tpu", lambda: True)
    assert distributed.plan() == {}  # Cloud TPU: jax.distributed.initialize() finds the slice itself
    monkeypatch.setattr(distributed, "running_on_cloud_tpu", lambda: False)
    for var, value in (("SLURM_JOB_ID", "7"), ("SLURM_STEP_NODELIST", "n[1-2]"), ("SLURM_NTASKS", "16"),
                       ("SLURM_PROCID", "5"), ("SLURM_LOCALID", "5")):
        monkeypatch.setenv(var, value)
    assert distributed.plan() == {}
    assert distributed.plan(mode="off") is None


# ---- teacher cache: what the config refuses, the file format ----------------------------------------------------

def test_teacher_cache_manifest_and_rows(runs):
    from kdjax.data.sources import open_source
    from kdjax.data.teacher_cache import TeacherCache

    cache = TeacherCache(runs["cache_dir"])
    assert cache.model == "Teacher" and cache.count == 256 and cache.num_classes == 10
    src, _ = open_source(config(runs["teacher"]).data, "train")
    assert [int(cache.labels[i]) for i in (0, 100, 255)] == [int(src[i]["label"]) for i in (0, 100, 255)]
    assert cache.logits([3, 1]).shape == (2, 10) and cache.logits([3, 1]).dtype == np.float32


def test_cache_teacher_cli_writes_top_k_logits(runs):
    from kdjax.data.teacher_cache import TeacherCache

    assert "Cached Teacher (convnet_student) top-3 logits for 256 training images" in runs["cli_topk"][1]["stdout"]
    full, topk = TeacherCache(runs["cache_dir"]), TeacherCache(str(runs["root"] / "topk_cache"))
    assert topk.top_k == 3 and sorted(os.listdir(topk.directory)) == [
        "labels.npy", "logsumexp.npy", "manifest.json", "topk_indices.npy", "topk_values.npy"]
    rows = np.arange(0, 256, 17)
    exact, rebuilt = full.logits(rows), topk.logits(rows)
    top = np.argsort(-exact, -1)[:, :3]
    np.testing.assert_allclose(np.take_along_axis(rebuilt, top, -1), np.take_along_axis(exact, top, -1), rtol=1e-5)
    np.testing.assert_array_equal(topk.labels[rows], full.labels[rows])


@pytest.mark.parametrize("change,field", [
    ({"data.augment": "flip"}, "data.augment"),
    ({"data.mixup_alpha": 0.2}, "data.mixup_alpha"),
    ({"losses.kd.t_key": "avg_pool"}, "losses.kd.t_key"),
    ({"models.Teacher.arch": "convnet_teacher"}, "models.Teacher.arch"),
    ({"data.train_limit": 128}, "data.train_limit"),
    ({"models.Teacher.frozen": False}, "models.Teacher.frozen"),
])
def test_teacher_cache_is_refused_where_it_cannot_stand_in_for_the_teacher(runs, change, field):
    from kdjax.config.check import check_teacher_cache
    from kdjax.errors import ConfigError

    cfg = config(runs["teacher"], teacher_cache=runs["cache_dir"], **change)
    with pytest.raises(ConfigError) as e:
        check_teacher_cache(cfg)
    assert e.value.field == field, str(e.value)
    assert check_teacher_cache(config(runs["teacher"], teacher_cache=runs["cache_dir"])) == "Teacher"


def test_top_k_cache_rebuilds_logits_with_the_right_top_k_and_mass():
    import jax

    from kdjax.data.teacher_cache import rebuild_logits

    logits = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32) * 3
    top = np.argsort(-logits, -1)[:, :5]
    values = np.take_along_axis(logits, top, -1)
    lse = np.log(np.exp(logits).sum(-1))
    rebuilt = rebuild_logits(values, top, lse, 20)
    np.testing.assert_allclose(np.take_along_axis(rebuilt, top, -1), values)
    p, q = jax.nn.softmax(logits), jax.nn.softmax(rebuilt)
    np.testing.assert_allclose(np.take_along_axis(np.asarray(q), top, -1), np.take_along_axis(np.asarray(p), top, -1),
                               rtol=1e-5)
    np.testing.assert_allclose(rebuild_logits(logits, np.tile(np.arange(20), (4, 1)), lse, 20), logits)
