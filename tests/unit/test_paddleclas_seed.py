"""Every distillation YAML of the seed document, through the PaddleClas YAML route: each translates to the kdjax
config written for it by hand (configs/<method>.py:imagenet: same models, frozen flags, captured features and loss
entries), its loss values equal that config's on the same batch, and each value is logged under PaddleClas' key.

The seed document quotes only Arch and Loss (tests/data/paddleclas_seed/<method>.yaml); _common.yaml adds the
Global / Optimizer / DataLoader sections of PaddleClas' ImageNet recipe.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, load_config

SEED = os.path.join(REPO, "tests", "data", "paddleclas_seed")
METHODS = ["ssld", "dml", "udml", "afd", "dkd", "dist", "mgd", "wsl"]
# PaddleClas' CombinedLoss keys of each seed config (ppcls/loss/distillationloss.py formats)
KEYS = {
    "ssld": {"DMLLoss_Student_Teacher_0"},
    "dml": {"CELoss_Student", "CELoss_Teacher", "DMLLoss_Student_Teacher_0"},
    "udml": {"CELoss_Student", "CELoss_Teacher", "DMLLoss_Student_Teacher_0", "loss_l2_loss_l2_0"},
    "afd": {"CELoss_Student", "loss_kldiv_Student_Teacher", "loss_afd"},
    "dkd": {"CELoss_Student", "loss_dkd_Student_Teacher"},
    "dist": {"CELoss_Student", "loss_dist_Student_Teacher"},
    "mgd": {"CELoss_Student", "loss_mgd_0_Student_Teacher"},
    "wsl": {"CELoss_Student", "wsl_loss_Student_Teacher"},
}


def seed_yaml(method: str, directory) -> str:
    """The seed document's Arch + Loss of `method` with the common sections, as one PaddleClas YAML file."""
    with open(os.path.join(SEED, "_common.yaml")) as f:
        common = f.read()
    with open(os.path.join(SEED, f"{method}.yaml")) as f:
        seed = f.read()
    path = os.path.join(str(directory), f"{method}.yaml")
    with open(path, "w") as f:
        f.write(common + "\n" + seed)
    return path


def _entries(config):
    from kdjax.losses.entries import parse_entries

    return parse_entries(list(config.losses.values()))


@pytest.mark.parametrize("method", METHODS)
def test_seed_yaml_translates_to_the_methods_kdjax_config(method, tmp_path):
    from kdjax.config.paddleclas import translate_file

    ours = translate_file(seed_yaml(method, tmp_path))
    native = load_config(f"configs/{method}.py", "imagenet")
    assert set(ours.models) == set(native.models)
    for name, m in native.models.items():
        t = ours.models[name]
        assert (t.arch, bool(t.frozen), set(t.capture)) == (m.arch, bool(m.frozen), set(m.capture)), name
    assert ours.export_model == native.export_model
    key = lambda e: (e.type, e.units, e.s_key, e.t_key, e.s_keys, e.t_keys)  # noqa: E731
    mine = sorted(_entries(ours), key=key)
    theirs = sorted(_entries(native), key=key)
    assert [key(e) for e in mine] == [key(e) for e in theirs]
    for a, b in zip(mine, theirs):
        assert a.weight == b.weight and a.params == b.params, (a.type, a.weight, a.params, b.weight, b.params)


def _outputs(config, rng, batch=6, classes=10):
    """Random logits [N, classes] for every model and a random NHWC map [N, 4, 4, C] for every feature a loss reads
    (C: the channels the loss's parameters name, else 8): the same arrays go to both configs."""
    shapes = {name: {"logits": (batch, classes)} for name in config.models}
    for e in _entries(config):
        for unit in e.units:
            for side, model in enumerate(unit):
                keys = (e.s_keys, e.t_keys)[side] if e.spec.multi_key else ((e.s_key, e.t_key)[side],)
                channels = e.params.get(("student_channels", "teacher_channels")[side], 8)
                for k in keys:
                    if k != "logits":
                        shapes[model][k] = (batch, 4, 4, channels)
    leaves, tree = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(rng, len(leaves))
    return jax.tree.unflatten(tree, [3.0 * jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, leaves)])


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m in ("afd", "mgd") else m
                                    for m in METHODS])  # AFD's 24 heads and MGD's 512-channel generator compile slowly
def test_seed_yaml_losses_equal_the_kdjax_configs_on_one_batch(method, tmp_path):
    from kdjax.config.paddleclas import translate_file
    from kdjax.losses import build_losses
    from kdjax.config.metric_names import term_labels

    ours = translate_file(seed_yaml(method, tmp_path))
    native = load_config(f"configs/{method}.py", "imagenet")
    outputs = _outputs(native, jax.random.PRNGKey(1))
    labels = jax.random.randint(jax.random.PRNGKey(2), (6,), 0, 10)
    a, b = build_losses(list(ours.losses.values())), build_losses(list(native.losses.values()))
    params = jax.jit(b.init)(jax.random.PRNGKey(3), outputs)  # learnable loss parts (MGD, AFD heads): shared
    rng = jax.random.PRNGKey(4)
    total_a, terms_a = jax.jit(lambda p, o, y, r: a(p, o, y, rng=r, epoch=1.0))(params, outputs, labels, rng)
    total_b, terms_b = jax.jit(lambda p, o, y, r: b(p, o, y, rng=r, epoch=1.0))(params, outputs, labels, rng)
    assert set(terms_a) == set(terms_b)
    for k in terms_b:
        np.testing.assert_allclose(np.asarray(terms_a[k]), np.asarray(terms_b[k]), rtol=1e-6, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(float(total_a), float(total_b), rtol=1e-6)
    assert np.isfinite(float(total_a))
    # each value under PaddleClas' key
    assert set(term_labels(ours, a).values()) == KEYS[method]


@pytest.mark.slow
def test_seed_yaml_features_exist_in_the_real_networks(tmp_path):
    """Every return_patterns name of the seed YAMLs is a feature kdjax's network of that name records (traced by
    shape only, at 32×32), so the YAMLs' own networks run their losses."""
    from kdjax.config.paddleclas import translate_file
    from kdjax.models.distillation import DistillationModel, build_submodels

    wanted = {}
    for method in METHODS:
        config = translate_file(seed_yaml(method, tmp_path))
        for m in config.models.values():
            wanted.setdefault(m.arch, set()).update(m.capture)
    assert set(wanted) == {"ResNet34", "ResNet18", "ResNet50_vd", "PPLCNet_x2_5"}
    import ml_collections

    models = ml_collections.ConfigDict({a: dict(arch=a, kwargs={}) for a in wanted})
    model = DistillationModel(build_submodels(models, 10))
    for arch, names in wanted.items():
        assert names <= set(model.feature_names(arch, jnp.zeros((1, 32, 32, 3)))), arch
