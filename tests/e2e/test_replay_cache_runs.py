"""Replay caches (issue 20): K augmented views per image with their parameters and the teacher's logits.

A tiny KD job (256 Fashion-MNIST images, batch 32, 2 epochs, crop_flip + mixup + cutmix, a random-init frozen
teacher) trained with the live teacher (`data.replayable=True`) and from a K=2 cache (K = epochs): the views, the
stored logits and the trained students must match; the cache is refused wherever it cannot stand in for the teacher.
"""

import os
import shutil

import numpy as np
import pytest

from conftest import load_config, tiny
from kdjax.errors import ConfigError

EPOCHS = 2
STEPS = EPOCHS * 256 // 32


def _teacher(directory, seed=3):
    import jax
    import jax.numpy as jnp

    from kdjax.models import get_model
    from kdjax.weights import export_dir as export

    module = get_model("convnet_student", field="teacher", num_classes=10)
    variables = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 28, 28, 1)), train=False)
    export.save_export(directory, {k: variables[k] for k in ("params", "batch_stats")},
                       export.make_spec("convnet_student", {}, 10, (28, 28, 1), (0.286,), (0.353,)))
    return directory


def config(teacher, **overrides):
    c = tiny(load_config("configs/kd.py"), train_limit=256, test_limit=64, batch=32, epochs=EPOCHS)
    with c.unlocked():
        c.models.Teacher.arch, c.models.Teacher.init = "convnet_student", teacher
        c.data.augment, c.data.mixup_alpha, c.data.cutmix_alpha = "crop_flip", 0.4, 1.0
        c.data.replayable = True
        c.train.log_every_steps, c.train.checkpoint_every_steps, c.train.eval_batch_size = 1, 1000, 64
        for path, value in overrides.items():
            *parents, leaf = path.split(".")
            node = c
            for p in parents:
                node = node[p]
            node[leaf] = value
    return c


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from kdjax.tools.replay_build import build_replay_cache

    root = tmp_path_factory.mktemp("replay")
    teacher = _teacher(str(root / "teacher"))
    build_replay_cache(config(teacher), str(root / "cache"), views=EPOCHS, log=lambda *a: None)
    return {"root": root, "teacher": teacher, "cache": str(root / "cache")}


def _checked(cfg):
    from kdjax.config.check import check

    return check(cfg, splits=("train",))


def test_replayed_views_are_bit_identical_to_the_live_pipeline(env):
    from kdjax.data.indexed import IndexedRecords
    from kdjax.data.pipeline import train_pipeline
    from kdjax.data.replay import draw, stored
    from kdjax.data.teacher_cache import open_cache

    cfg = config(env["teacher"])
    train = _checked(cfg).train
    cache = open_cache(env["cache"])
    live = iter(train_pipeline(train, global_batch=32, epochs=EPOCHS, seed=0).dataset)
    replay = iter(train_pipeline(IndexedRecords(train), global_batch=32, epochs=EPOCHS, seed=0,
                                 replay_cache=cache).dataset)
    mixed = 0
    for step in range(STEPS):
        a, b = next(live), next(replay)
        assert set(a) == {"image", "label", "soft_label"}
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["soft_label"], b["soft_label"])
        assert (b["view"] == step // (STEPS // EPOCHS)).all()  # epoch e replays view e mod K
        mixed += int((b["soft_label"].max(-1) < 1).sum())
    assert mixed > 100  # most rows are mixed: partners and boxes are replayed too
    # the stored parameters are the live draws of (seed, view, index)
    for i, v in [(0, 0), (17, 1), (255, 1)]:
        p = draw(_recipe(train), 0, v, i, 256, 28, 28)
        q = stored(cache.params, i, v)
        assert {k: p[k] for k in p if k != "lam"} == {k: q[k] for k in q if k != "lam"}
        assert np.float32(p["lam"]) == np.float32(q["lam"])


def _recipe(train):
    from kdjax.data.replay import recipe_from

    return recipe_from(train.options, train.image_shape)


def test_stored_logits_are_the_teachers_on_that_view(env):
    import jax
    import jax.numpy as jnp

    from kdjax.data.replay import apply_view, stored
    from kdjax.data.teacher_cache import open_cache
    from kdjax.models import get_model
    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import load_export

    checked = _checked(config(env["teacher"]))
    train, recipe = checked.train, _recipe(checked.train)
    cache = open_cache(env["cache"])
    rows = [(3, 0), (100, 1), (200, 0), (255, 1)]
    images = []
    for i, v in rows:
        p = stored(cache.params, i, v)
        images.append(apply_view(recipe, np.asarray(train[i]["image"]), p, np.asarray(train[p["partner"]]["image"]),
                                 stored(cache.params, p["partner"], v)))
    variables, _ = load_export(env["teacher"])
    module = get_model("convnet_student", field="teacher", num_classes=10)
    x = normalize(jnp.asarray(np.stack(images)), tuple(checked.info.mean), tuple(checked.info.std))
    want = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))
    got = cache.logits([i for i, _ in rows], [v for _, v in rows])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _state(workdir, cfg):
    import jax

    from kdjax.data.sources import open_source
    from kdjax.trainer import Trainer

    src, info = open_source(cfg.data, "test")
    state, _, step = Trainer(cfg, str(workdir), src, src, info, "check").restore_latest()
    return step, jax.tree.map(np.asarray, jax.device_get(state.params["Student"]))


def test_student_from_a_k_equals_epochs_cache_equals_the_live_teacher_student_and_resumes(env):
    from kdjax import train

    root = env["root"]
    live_cfg = config(env["teacher"], **{"train.checkpoint_every_steps": STEPS})
    train.run(live_cfg, str(root / "live"))
    cached_cfg = config(env["teacher"], teacher_cache=env["cache"], **{"train.checkpoint_every_steps": STEPS})
    # stopped mid-epoch 1 (step 11 of 16) and resumed: the cache run reads views by (epoch, index), not by position
    stopped = train.run(config(env["teacher"], teacher_cache=env["cache"], **{"train.stop_after_steps": 11,
                                                                             "train.checkpoint_every_steps": STEPS}),
                        str(root / "cached"))
    assert stopped.get("preempted") and stopped["step"] == 11
    train.run(cached_cfg, str(root / "cached"))
    (s1, live), (s2, cached) = _state(root / "live", live_cfg), _state(root / "cached", cached_cfg)
    assert s1 == s2 == STEPS
    for a, b in zip(*(map(np.ravel, __import__("jax").tree.leaves(t)) for t in (live, cached))):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("change,field", [
    ({"seed": 1}, "seed"),
    ({"data.mixup_alpha": 0.2}, "data.mixup_alpha"),
    ({"data.train_limit": 128}, "data.train_limit"),
    ({"precision": "bfloat16"}, "precision"),
    ("feature loss", "losses.kd."),
])
def test_replay_cache_is_refused_where_it_cannot_stand_in(env, change, field):
    from kdjax.config.check import check_teacher_cache
    from kdjax.config.defaults import loss_entry

    if change == "feature loss":  # a loss reading the teacher's features needs the live teacher
        cfg = config(env["teacher"], teacher_cache=env["cache"])
        with cfg.unlocked():
            cfg.losses.kd = loss_entry("fitnet", 1.0, pairs=[["Student", "Teacher"]], s_key="blocks[1]",
                                       t_key="blocks[1]")
    else:
        cfg = config(env["teacher"], teacher_cache=env["cache"], **change)
    with pytest.raises(ConfigError) as e:
        check_teacher_cache(cfg)
    assert e.value.field.startswith(field), e.value
    assert check_teacher_cache(config(env["teacher"], teacher_cache=env["cache"])) == "Teacher"


def test_replay_cache_refuses_another_augmentation_and_teacher(env, tmp_path):
    from kdjax.config.check import check_teacher_cache
    from kdjax.data.teacher_cache import open_cache

    with pytest.raises(ConfigError) as e:
        open_cache(env["cache"]).check_source(_checked(config(env["teacher"], **{"data.augment": "crop"})).train)
    assert e.value.field == "data.augment"
    other = _teacher(str(tmp_path / "other"), seed=5)  # another teacher's weights
    with pytest.raises(ConfigError) as e:
        check_teacher_cache(config(other, teacher_cache=env["cache"]))
    assert e.value.field == "models.Teacher.init"


def test_top_k_cache_is_refused_unless_accepted_and_an_interrupted_build_resumes(env, tmp_path):
    from kdjax.config.check import check_teacher_cache
    from kdjax.data.teacher_cache import open_cache
    from kdjax.tools.replay_build import build_replay_cache

    out = str(tmp_path / "topk")
    m = build_replay_cache(config(env["teacher"]), out, views=2, top_k=3, log=lambda *a: None)
    assert m["top_k"] == 3 and 0 < m["max_rest_mass"] < 1
    with pytest.raises(ConfigError, match="teacher_cache_approximate"):
        check_teacher_cache(config(env["teacher"], teacher_cache=out))
    assert check_teacher_cache(config(env["teacher"], teacher_cache=out, teacher_cache_approximate=True)) == "Teacher"
    # top-k values and log-sum-exp against the full cache's logits (float64 numpy)
    full, topk = open_cache(env["cache"]), open_cache(out)
    logits = np.asarray(full._logits, np.float64)
    np.testing.assert_allclose(topk._values, -np.sort(-logits, -1)[..., :3], rtol=1e-6, atol=1e-6)
    lse = np.log(np.exp(logits).sum(-1))
    np.testing.assert_allclose(topk._lse, lse, rtol=1e-5, atol=1e-5)
    # interrupted after view 1 of 2: the same command finishes it, view 2 recomputed identically
    shutil.copytree(env["cache"], out + "2.tmp")
    import json

    path = os.path.join(out + "2.tmp", "manifest.json")
    with open(path) as f:
        partial = json.load(f)
    partial["views_done"] = 1
    partial.pop("seconds", None)
    with open(path, "w") as f:
        json.dump(partial, f)
    arr = np.load(os.path.join(out + "2.tmp", "logits.npy"), mmap_mode="r+")
    arr[:, 1] = 0
    arr.flush()
    del arr
    lines = []
    build_replay_cache(config(env["teacher"]), out + "2", views=2, log=lines.append)
    assert lines[0].startswith("resuming") and "1 of 2 views" in lines[0]
    np.testing.assert_array_equal(open_cache(out + "2")._logits, full._logits)
