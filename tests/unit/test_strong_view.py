"""The strong input view a loss can ask for (LossSpec.views, MLKD): the pipeline's `image_strong`, the RandAugment
ops, DistillationModel.apply_views (every model on each view, BatchNorm statistics view by view) and the train step
(the strong view read only when a loss needs it)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image, ImageOps

import kdjax.losses as L
from kdjax.data import strong_augment as S
from kdjax.data.options import PipelineOptions
from kdjax.data.pipeline import train_pipeline
from kdjax.errors import ConfigError
from kdjax.models.distillation import DistillationModel, SubModel
from kdjax.models import get_model
from kdjax.steps import create_state, make_train_step


class PatternSource:
    """Record i: a textured colour (or grayscale) image, label i % 10."""

    def __init__(self, n=64, shape=(16, 16, 3)):
        self.n, self.image_shape = n, shape

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        r = np.random.default_rng(int(i))
        return {"image": r.integers(0, 256, self.image_shape, dtype=np.uint8), "label": np.int32(int(i) % 10)}


def _batches(source, augment, views, k=3, seed=5):
    pipe = train_pipeline(source, global_batch=16, epochs=1.0, seed=seed, options=PipelineOptions(augment=augment),
                          views=views)
    it = iter(pipe.dataset)
    return [next(it) for _ in range(k)]


@pytest.mark.parametrize("shape,augment", [((16, 16, 3), "cifar"), ((12, 12, 1), "crop_flip"), ((12, 12, 1), "flip"),
                                           ((28, 28, 1), "crop")])
def test_pipeline_adds_a_deterministic_strong_view_and_keeps_the_weak_one(shape, augment):
    src = PatternSource(shape=shape)
    plain = _batches(src, augment, ())
    two = _batches(src, augment, ("strong",))
    again = _batches(src, augment, ("strong",))
    for p, t, a in zip(plain, two, again):
        assert "image_strong" not in p and sorted(t) == ["image", "image_strong", "label"]
        np.testing.assert_array_equal(p["image"], t["image"])  # the weak view does not depend on the strong one
        np.testing.assert_array_equal(t["image_strong"], a["image_strong"])  # a pure function of (seed, batch)
        assert t["image_strong"].shape == t["image"].shape and t["image_strong"].dtype == np.uint8
        assert np.mean(t["image_strong"] != t["image"]) > 0.3
    other_seed = _batches(src, augment, ("strong",), seed=6)[0]
    assert np.any(other_seed["image_strong"] != two[0]["image_strong"])


def test_label_safe_crop_recipe_never_flips_the_strong_view(monkeypatch):
    """`crop` keeps orientation (a flip can change a digit's label): the strong view's own crop is the weak view's
    relative pad (2 px at 28×28) and it is never mirrored. With RandAugment and Cutout switched off, every strong
    image is an unflipped shift of its record by at most 2 px, and some are shifted."""
    aug = S.StrongAugment("crop", n_ops=0)
    images = np.random.default_rng(0).integers(1, 256, (64, 28, 28, 1), dtype=np.uint8)
    monkeypatch.setattr(S, "cutout", lambda x, rng: x)
    out = aug({"image": images}, np.random.default_rng(1))["image_strong"]
    shifted = 0
    for img, got in zip(images, out):
        padded = np.pad(img, ((2, 2), (2, 2), (0, 0)))
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(padded[dy:dy + 28, dx:dx + 28], got)]
        assert offsets, "not an unflipped shift of its record"
        shifted += offsets != [(2, 2)]
    assert shifted > 32


def test_pipeline_refuses_mixing_and_unknown_views():
    src = PatternSource()
    with pytest.raises(ConfigError, match="mixup_alpha"):
        train_pipeline(src, global_batch=16, epochs=1.0, seed=0,
                       options=PipelineOptions(augment="flip", mixup_alpha=0.2, num_classes=10), views=("strong",))
    with pytest.raises(ValueError, match="unknown input view"):
        train_pipeline(src, global_batch=16, epochs=1.0, seed=0, views=("blurry",))


def test_ops_follow_pil():
    """Every op against PIL's on one colour image (geometric ops agree but for pixels on a sampling boundary)."""
    r = np.random.default_rng(0)
    img = r.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    pil = Image.fromarray(img)
    checks = {"autocontrast": (lambda v: ImageOps.autocontrast(pil), 0.0, 0),
              "equalize": (lambda v: ImageOps.equalize(pil), 0.0, 0),
              "posterize": (lambda v: ImageOps.posterize(pil, int(v)), 5.0, 0),
              "solarize": (lambda v: ImageOps.solarize(pil, v), 100.0, 0),
              "translate_x": (lambda v: pil.transform(pil.size, Image.AFFINE, (1, 0, v * 24, 0, 1, 0)), 0.25, 0),
              "shear_y": (lambda v: pil.transform(pil.size, Image.AFFINE, (1, 0, 0, v, 1, 0)), -0.2, 0),
              "rotate": (lambda v: pil.rotate(v), 17.0, 0.02)}
    for name, (ref, v, frac) in checks.items():
        ours = S._FUNCTIONS[name](img[None], np.array([v], np.float32))[0]
        assert np.mean(ours != np.asarray(ref(v))) <= frac, name
    for name in ("brightness", "color", "contrast", "sharpness"):
        ours = S._FUNCTIONS[name](img[None], np.array([0.4], np.float32))[0].astype(int)
        enhancer = getattr(__import__("PIL.ImageEnhance", fromlist=["x"]), name.capitalize())
        assert np.abs(ours - np.asarray(enhancer(pil).enhance(0.4)).astype(int)).max() <= 1, name


def test_rand_augment_and_cutout_on_gray_and_colour():
    for shape in ((8, 10, 10, 1), (8, 10, 10, 3)):
        x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        a = S.rand_augment(x, np.random.default_rng(3))
        np.testing.assert_array_equal(a, S.rand_augment(x, np.random.default_rng(3)))
        assert a.shape == x.shape and a.dtype == np.uint8
        cut = S.cutout(np.zeros(shape, np.uint8), np.random.default_rng(4))
        fill = S.CUTOUT_RGB if shape[-1] == 3 else (S.CUTOUT_GRAY,)
        covered = np.all(cut == np.array(fill, np.uint8), axis=-1)
        assert covered.any() and (covered.sum((1, 2)) <= (0.5 * 10 + 1) ** 2).all()


def _model():
    sub = lambda name, arch, frozen: SubModel(name, arch, {}, get_model(arch, num_classes=10), frozen, "", ())  # noqa
    return DistillationModel({"Teacher": sub("Teacher", "convnet_teacher", True),
                              "Student": sub("Student", "convnet_student", False)})


def test_apply_views_runs_every_model_on_each_view_and_threads_batch_norm():
    model = _model()
    r = np.random.default_rng(2)
    weak, strong = (jnp.asarray(r.normal(0, 1, (6, 28, 28, 1)), jnp.float32) for _ in range(2))
    variables = model.init_variables(jax.random.PRNGKey(0), weak)
    params, stats = {"Student": variables["Student"]["params"]}, {"Student": variables["Student"]["batch_stats"]}
    frozen = {"Teacher": variables["Teacher"]}
    rng = jax.random.PRNGKey(1)
    out, new = model.apply_views(params, stats, frozen, {"": weak, "strong": strong}, train=True, rng=rng)
    first, mid = model.apply(params, stats, frozen, weak, train=True, rng=rng)
    second, last = model.apply(params, mid, frozen, strong, train=True, rng=jax.random.fold_in(rng, 7920))
    for name in ("Student", "Teacher"):
        np.testing.assert_array_equal(out[name]["logits"], first[name]["logits"])
        np.testing.assert_array_equal(out[name]["strong/logits"], second[name]["logits"])
    # running statistics updated once per view, the strong view after the weak one (mdistiller's AugTrainer)
    jax.tree.map(np.testing.assert_array_equal, new, last)
    assert not np.allclose(jax.tree.leaves(new)[0], jax.tree.leaves(mid)[0])
    one, _ = model.apply_views(params, stats, frozen, {"": weak}, train=True, rng=rng)
    jax.tree.map(np.testing.assert_array_equal, one, first)


def _step(loss_cfgs):
    model = _model()
    losses = L.build_losses(loss_cfgs)
    sample = jnp.zeros((2, 28, 28, 1), jnp.float32)
    variables = model.init_variables(jax.random.PRNGKey(0), sample)
    params = {"Student": variables["Student"]["params"]}
    tx = optax.sgd(0.1)
    state = create_state(params, {"Student": variables["Student"]["batch_stats"]}, tx, losses)
    step = make_train_step(model, losses, tx, lambda s: 0.1, mean=(0.5,), std=(0.5,), steps_per_epoch=10)
    return jax.jit(step), state, {"Teacher": variables["Teacher"]}


def test_train_step_reads_the_strong_view_only_when_a_loss_needs_it():
    r = np.random.default_rng(3)
    batch = {"image": jnp.asarray(r.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)),
             "label": jnp.asarray(r.integers(0, 10, 8), jnp.int32)}
    strong = jnp.asarray(r.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8))
    step, state, frozen = _step([dict(type="gt_ce", models=["Student"]), dict(type="kd")])
    _, metrics = step(state, frozen, batch, jax.random.PRNGKey(0))  # no image_strong needed
    assert np.isfinite(metrics["loss"])
    step, state, frozen = _step([dict(type="mlkd")])
    with pytest.raises(KeyError, match="image_strong"):
        step(state, frozen, batch, jax.random.PRNGKey(0))
    _, m1 = step(state, frozen, dict(batch, image_strong=strong), jax.random.PRNGKey(0))
    _, m2 = step(state, frozen, dict(batch, image_strong=batch["image"]), jax.random.PRNGKey(0))
    assert np.isfinite(m1["loss"]) and m1["loss/mlkd/Student-Teacher/kd"] != m2["loss/mlkd/Student-Teacher/kd"]
