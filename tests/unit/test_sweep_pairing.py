"""Paired seeds in the sweep: with seed s, the baseline and every method start the Student from the same weights
and train it on the same batches in the same order (the same held-out examples removed), so the gain is a paired
difference. Checked for every method the benchmark config lists."""

import itertools

import jax
import ml_collections
import numpy as np

from conftest import load_config


def _student_init(config, seed):
    from kdjax.models.distillation import DistillationModel, build_submodels

    model = DistillationModel(build_submodels(ml_collections.ConfigDict(config.models), 10))
    x = np.zeros((2, 28, 28, 1), np.float32)
    return model.init_variables(jax.random.PRNGKey(seed), x)["Student"]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_every_method_starts_the_student_where_the_baseline_does():
    from kdjax.tools import sweep, sweep_configs

    cfg = load_config("configs/sweep_fashion_mnist.py")
    exports = {"": "/t", "Teacher2": "/t2"}
    base = sweep_configs.run_config(cfg, "baseline", 3, exports)
    for method in cfg.methods[1:]:  # every method: the same seed and the same Student entry as its baseline row
        if sweep_configs.is_baseline(cfg, method):
            continue
        c = sweep_configs.run_config(cfg, method, 3, exports, sweep.grid_trials(cfg, method)[-1])
        assert c.seed == 3 and c.export_model == "Student", method
        if sweep_configs.paired_with(cfg, method) != "baseline":  # own student (DeiT): its row drops the distillation token
            row = sweep_configs.run_config(cfg, sweep_configs.paired_with(cfg, method), 3, exports)
            own = sweep_configs.own_student(cfg, method)[1]
            assert row.seed == 3 and row.train.batch_size == c.train.batch_size, method
            assert dict(row.models.Student.kwargs) == dict(c.models.Student.kwargs, **own.baseline_kwargs), method
            continue
        assert (c.models.Student.arch, dict(c.models.Student.kwargs)) == (base.models.Student.arch,
                                                                           dict(base.models.Student.kwargs)), method
    # and the same initial weights, whatever other models the method adds (a frozen teacher, two teachers, a peer)
    base_init = _student_init(base, 3)
    for method in ("kd", "multi_teacher", "dml"):
        c = sweep_configs.run_config(cfg, method, 3, exports, sweep.grid_trials(cfg, method)[0])
        assert _same(_student_init(c, c.seed), base_init), method
    assert not _same(_student_init(sweep_configs.run_config(cfg, "baseline", 1, exports), 1), base_init)
    # DeiT against its ViT row: every parameter both have starts equal; only the distillation token, its head and
    # the position embedding (one token longer) are DeiT's own
    deit = _flat(_student_init(sweep_configs.run_config(cfg, "deit", 3, exports), 3))
    vit = _flat(_student_init(sweep_configs.run_config(cfg, "baseline_deit", 3, exports), 3))
    differ = sorted(k for k in deit if not (k in vit and deit[k].shape == vit[k].shape
                                            and np.array_equal(deit[k], vit[k])))
    assert differ == ["dist_token", "head_dist/bias", "head_dist/kernel", "pos_embed"], differ
    assert set(vit) <= set(deit)


def _flat(tree):
    return {"/".join(str(getattr(k, "key", k)) for k in path[1:]): v
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _batches(config, n=3):
    from kdjax.data.pipeline import train_pipeline
    from kdjax.data.sources import open_source

    source, _ = open_source(config.data, "train")
    pipe = train_pipeline(source, global_batch=config.train.batch_size, epochs=1.0, seed=int(config.seed),
                          augment=config.data.augment)
    return [(b["image"].copy(), b["label"].copy()) for b in itertools.islice(iter(pipe.dataset), n)]


def test_same_seed_same_batches_for_baseline_and_method():
    from kdjax.tools import sweep, sweep_configs

    cfg = load_config("configs/sweep_fashion_mnist.py")
    with cfg.unlocked():
        cfg.base.data.train_limit, cfg.base.data.holdout = 1200, 200
    base = _batches(sweep_configs.run_config(cfg, "baseline", 2, "/t"))
    for method in ("kd", "fitnet"):
        other = _batches(sweep_configs.run_config(cfg, method, 2, "/t", sweep.grid_trials(cfg, method)[0]))
        for (xa, ya), (xb, yb) in zip(base, other):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(base[0][1], _batches(sweep_configs.run_config(cfg, "baseline", 4, "/t"))[0][1])
    vit = _batches(sweep_configs.run_config(cfg, "baseline_deit", 2, "/t"))  # DeiT's rows: their own batch size, paired
    deit = _batches(sweep_configs.run_config(cfg, "deit", 2, "/t", sweep.grid_trials(cfg, "deit")[0]))
    assert vit[0][1].shape[0] == 64 != base[0][1].shape[0]
    for (xa, ya), (xb, yb) in zip(vit, deit):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
