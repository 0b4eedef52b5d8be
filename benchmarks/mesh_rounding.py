"""One train-step gradient of the tiny KD job (tests/e2e/test_multi_device.py::config) on the same state and first
batch: float32 on 1 device, float32 with the batch split over 2, 4 and 8 devices, and float64 on 1 device.

Prints, per gradient leaf, max|difference| / max|float64 value| of each pair, then the stage0 2x2 max-pool windows
whose winner differs from float64's. It tells a semantic difference between meshes (every leaf far apart, the
8-device run far from float64 too) from float rounding amplified by a ReLU / max-pool kink (the leaves below one
flipped window far apart, the other run matching float64).

    nice -n 10 python benchmarks/mesh_rounding.py
"""

import os
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "e2e")]
os.chdir(REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import test_multi_device as job  # noqa: E402
from kdjax.data.sources import open_source  # noqa: E402
from kdjax.steps import apply_losses, build_optimizer, normalize  # noqa: E402
from kdjax.trainer import Trainer  # noqa: E402


def main():
    tmp = tempfile.mkdtemp()
    cfg = job.config(job._make_teacher(os.path.join(tmp, "teacher")))
    src, info = open_source(cfg.data, "train")
    tr = Trainer(cfg, os.path.join(tmp, "run"), src, src, info, "mesh_rounding")
    batch = {k: np.asarray(v) for k, v in next(iter(tr._pipeline().dataset)).items()}
    state, frozen = tr.initial_state(build_optimizer(cfg.optim, 1, 1)[0])
    params, stats, frozen = jax.device_get((state.params, state.batch_stats, frozen))
    student = tr.submodels["Student"].module

    def forward(params, stats, frozen, batch, dtype):
        images = normalize(batch["image"], tr.mean, tr.std, dtype)
        out, new_stats = tr.train_model.apply_views(params, stats, frozen, {"": images}, train=True,
                                                    rng=jax.random.PRNGKey(0))
        return apply_losses(tr.losses, {}, None, out, batch, jax.random.PRNGKey(1), jnp.float32(1))[0], new_stats

    def stage0(params, stats, batch, dtype):
        x = normalize(batch["image"], tr.mean, tr.std, dtype)
        _, st = student.apply({"params": params["Student"], "batch_stats": stats["Student"]}, x, train=True,
                              mutable=["batch_stats", "intermediates"], capture_intermediates=True)
        inter = st["intermediates"]
        # what the pool sees (relu is idempotent, whether or not the model records before its ReLU); the stem's
        # normalised activations
        return jax.nn.relu(inter["stage0_conv0"]["__call__"][0]), inter["stem_conv"]["BatchNorm_0"]["__call__"][0]

    grad = jax.jit(jax.value_and_grad(forward, has_aux=True), static_argnums=4)
    act = jax.jit(stage0, static_argnums=3)
    one = lambda t: jax.device_put(t, jax.devices()[0])  # noqa: E731
    runs = {"1dev": (grad(one(params), one(stats), one(frozen), one(batch), jnp.float32),
                     act(one(params), one(stats), one(batch), jnp.float32))}
    for n in (2, 4, 8):
        mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
        rep = lambda t: jax.device_put(t, NamedSharding(mesh, P()))  # noqa: E731
        split = jax.device_put(batch, NamedSharding(mesh, P("data")))
        runs[f"{n}dev"] = (grad(rep(params), rep(stats), rep(frozen), split, jnp.float32),
                           act(rep(params), rep(stats), split, jnp.float32))
    jax.config.update("jax_enable_x64", True)
    f64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)  # noqa: E731
    ref = (grad(one(f64(params)), one(f64(stats)), one(f64(frozen)), one(batch), jnp.float64),
           act(one(f64(params)), one(f64(stats)), one(batch), jnp.float64))

    names = list(runs)
    print("loss  " + "  ".join(f"{k} {float(v[0][0][0]):.9f}" for k, v in runs.items())
          + f"  f64 {float(ref[0][0][0]):.12f}")
    print("gradient leaf: max|a-b| / max|f64|   " + "  ".join(f"{k}-f64" for k in names) + "  1dev-8dev")
    ref_leaves = jax.tree_util.tree_leaves_with_path(ref[0][1])
    leaves = {k: jax.tree.leaves(v[0][1]) for k, v in runs.items()}
    for i, (path, r) in enumerate(ref_leaves):
        r = np.asarray(r)
        scale = np.abs(r).max()
        cols = [np.abs(np.asarray(leaves[k][i], np.float64) - r).max() / scale for k in names]
        cols.append(np.abs(np.asarray(leaves["1dev"][i], np.float64) - leaves["8dev"][i]).max() / scale)
        print(f"  {jax.tree_util.keystr(path):52s}" + "  ".join(f"{c:.1e}" for c in cols))

    def winners(a):
        n, h, w, c = a.shape
        win = np.asarray(a)[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
        return win.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)

    print("stem BatchNorm output, max|a-f64|: " + "  ".join(
        f"{k} {np.abs(np.asarray(runs[k][1][1], np.float64) - ref[1][1]).max():.1e}" for k in names))
    ref_win = winners(ref[1][0])
    for k in names:
        wk = winners(runs[k][1][0])
        flipped = np.argwhere(wk.argmax(-1) != ref_win.argmax(-1))
        print(f"stage0 max-pool windows won by another element than in f64, {k}: {len(flipped)} of "
              f"{ref_win[..., 0].size}" + "".join(f"; {tuple(map(int, i))}: {wk[tuple(i)]} (f64 {ref_win[tuple(i)]})"
                                                for i in flipped[:3]))


if __name__ == "__main__":
    main()
