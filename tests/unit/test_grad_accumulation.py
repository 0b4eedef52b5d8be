"""Gradient accumulation (`train.grad_accum_steps`) is exact or refused, for every registered loss type.

Every loss type of `kdjax.losses.loss_types()` is covered (a new loss file is picked up automatically): a type whose
default entry is per-sample separable (`LossSpec.separable`) must give, through the real train step split into 4
micro-batches, the same update and loss as the full batch of 16 (float32 rounding; small conv models without
BatchNorm, whose statistics would differ per micro-batch by design); any other is refused by `kdjax.config.check`
with a ConfigError naming the loss entry and train.grad_accum_steps. Entries that are separable or not depending on
their hyper-parameters or data (gt_ce's reduction='sum' or SSLD label mask, FitNet's conv3x3 regressor) are tested
both ways.
"""

import functools
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kdjax.config.check import check_config
from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.errors import ConfigError
from kdjax.losses import build_losses, loss_types
from kdjax.losses.entries import parse_entries
from kdjax.losses.registry import BatchKind, is_separable
from kdjax.models.distillation import DistillationModel, SubModel
from kdjax.models.features import record
from kdjax.steps import LOSS_PARAMS, create_state, make_train_step

BATCH, ACCUM, CLASSES = 16, 4, 10
CAPTURE = ("blocks[0]", "blocks[1]", "avg_pool")
S_CH, T_CH = 8, 12  # channels of blocks[1] / avg_pool: student, teacher
LOGIT_PAIR = dict(pairs=[["Student", "Teacher"]])

# What each type reads, where the logits of a [Student, Teacher] pair do not suit it (or its defaults draw random
# numbers: MGD's mask ratio 0 keeps every position, so both runs see the same values). A loss type not listed here
# is tried on logits with its defaults; if that is not a valid entry for it, add it here.
ENTRIES = {
    "gt_ce": dict(models=["Student"]),
    "at": dict(LOGIT_PAIR, s_keys=["blocks[0]", "blocks[1]"], t_keys=["blocks[0]", "blocks[1]"]),
    "afd": dict(LOGIT_PAIR, s_keys=["blocks[0]", "blocks[1]"], t_keys=["blocks[0]", "blocks[1]"], qk_dim=8),
    "fitnet": dict(LOGIT_PAIR, key="blocks[1]"),
    "mgd": dict(LOGIT_PAIR, key="blocks[1]", student_channels=S_CH, teacher_channels=T_CH, lambda_mgd=0.0),
    "pefd": dict(LOGIT_PAIR, key="avg_pool", student_channels=S_CH, teacher_channels=T_CH),
    "crd": dict(LOGIT_PAIR, key="avg_pool", feat_dim=8, nce_k=8),
    "rkd": dict(LOGIT_PAIR, key="avg_pool"),
    "deit": dict(LOGIT_PAIR, s_keys=["logits", "logits"], t_keys=["logits"]),
    "uskd": dict(models=["Student"], key="blocks[1]"),
    **{t: dict(LOGIT_PAIR, s_keys=["blocks[0]", "blocks[1]"], t_keys=["blocks[0]", "blocks[1]"])
       for t in ("ickd", "nst", "ofd", "reviewkd", "sp", "vid")},
}
ENTRIES["ofd"] = dict(ENTRIES["ofd"], teacher_bns=["stage0_conv0/BatchNorm_0", "stage1_conv0/BatchNorm_0"])
# entries whose separability depends on a hyper-parameter or the data: (id, type, params, SSLD data?, separable)
VARIANTS = [
    ("gt_ce_sum", "gt_ce", dict(reduction="sum"), False, False),
    ("gt_ce_ssld", "gt_ce", {}, True, False),
    ("deit_ssld", "deit", {}, True, False),
    ("deit_soft", "deit", dict(distillation_type="soft"), False, True),
    ("fitnet_conv3x3", "fitnet", dict(regressor="conv3x3"), False, False),
    ("fitnet_conv", "fitnet", dict(regressor="conv"), False, True),
]


class TinyNet(nn.Module):
    """conv (blocks[0]) → ReLU → strided conv (blocks[1]) → mean (avg_pool) → dense; no BatchNorm."""

    width: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(4, (3, 3), padding=1)(x))
        record(self, "blocks[0]", x)
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=2, padding=1)(x))
        record(self, "blocks[1]", x)
        x = jnp.mean(x, axis=(1, 2))
        record(self, "avg_pool", x)
        x = nn.Dense(CLASSES)(x)
        record(self, "logits", x)
        return x


def _entry(type_: str, **params):
    spec = dict(ENTRIES.get(type_, LOGIT_PAIR))
    spec.update(params)
    return loss_entry(type_, 1.0, **spec)


def _config(entry, accum: int, ssld: bool = False):
    c = base_config()
    with c.unlocked():
        c.models.Teacher = model_entry("convnet_student", frozen=True, init="train", capture=CAPTURE)
        c.models.Student = model_entry("convnet_student", capture=CAPTURE)
        c.losses.term = entry
        c.train.grad_accum_steps = accum
        c.train.batch_size = BATCH
        if ssld:
            c.data.source, c.data.root, c.data.unlabeled_list = "list", tempfile.gettempdir(), "unlabeled.txt"
    return c


@functools.lru_cache(maxsize=None)
def _setup():
    model = DistillationModel({"Student": SubModel("Student", "tiny", {}, TinyNet(S_CH), False, "", CAPTURE),
                               "Teacher": SubModel("Teacher", "tiny", {}, TinyNet(T_CH), True, "x", CAPTURE)})
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (BATCH, 8, 8, 1), dtype=np.uint8),
             "label": rng.integers(0, CLASSES, (BATCH,)).astype(np.int32),
             "index": np.arange(BATCH, dtype=np.int32)}
    sample = jnp.zeros((2, 8, 8, 1))
    variables = model.init_variables(jax.random.PRNGKey(0), sample)
    return model, variables, batch


def _one_update(entry, accum: int):
    """(parameter change, loss) of one real train step (SGD, lr 1: the change is minus the gradient)."""
    model, variables, batch = _setup()
    losses = build_losses([entry])
    params = {"Student": variables["Student"]["params"]}
    frozen = {"Teacher": variables["Teacher"]}
    outputs = model.apply(params, {}, frozen, jnp.zeros((2, 8, 8, 1)), train=False, rng=jax.random.PRNGKey(1))[0]
    loss_params = losses.init(jax.random.PRNGKey(2), outputs)
    if loss_params:
        params[LOSS_PARAMS] = loss_params
    tx = optax.sgd(1.0)
    state = create_state(params, {}, tx, losses, losses.init_state(jax.random.PRNGKey(3), BATCH))
    step = jax.jit(make_train_step(model, losses, tx, lambda s: 1.0, mean=(0.5,), std=(0.25,), steps_per_epoch=10,
                                   grad_accum_steps=accum))
    new, metrics = step(state, frozen, batch, jax.random.PRNGKey(4))
    delta = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new.params, state.params)
    return delta, float(metrics["loss"])


def _assert_exact(entry):
    full, loss_full = _one_update(entry, 1)
    split, loss_split = _one_update(entry, ACCUM)
    # float32 summation order only (micro-batch sums vs one sum): the same 2e-5 as the parameters below (VID's loss
    # differed by 1.02e-5 relative with XLA:CPU's backend optimisation off); a non-separable loss differs by > 5%
    np.testing.assert_allclose(loss_split, loss_full, rtol=2e-5)
    changed = 0
    for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(split), jax.tree_util.tree_leaves_with_path(full)):
        scale = float(np.max(np.abs(b))) or 1.0
        changed += scale > 1e-8
        np.testing.assert_allclose(a / scale, b / scale, atol=2e-5, err_msg=jax.tree_util.keystr(path))
    assert changed, "the loss moved no parameter: the comparison would be vacuous"


def _assert_refused(entry, ssld=False):
    with pytest.raises(ConfigError) as e:
        check_config(_config(entry, ACCUM, ssld))
    assert e.value.field == "losses.term", str(e.value)
    assert "train.grad_accum_steps" in str(e.value)
    check_config(_config(entry, 1, ssld))  # the same entry without accumulation is fine


@pytest.mark.parametrize("type_", sorted(loss_types()))
def test_accumulation_is_exact_or_refused(type_):
    entry = _entry(type_)
    (parsed,) = parse_entries([entry])
    if is_separable(parsed):
        check_config(_config(entry, ACCUM))  # accepted ...
        _assert_exact(entry)                 # ... and exact
    else:
        _assert_refused(entry)


def test_every_loss_type_declares_whether_it_is_separable():
    """Declared in each loss's own module (LossSpec.separable); an undeclared one would be refused, never wrong."""
    assert [name for name, spec in sorted(loss_types().items()) if spec.separable is None] == []


@pytest.mark.parametrize("name,type_,params,ssld,separable", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_separability_follows_the_entry_and_the_data(name, type_, params, ssld, separable):
    entry = _entry(type_, **params)
    (parsed,) = parse_entries([entry])
    assert is_separable(parsed, BatchKind(label_mask=ssld)) == separable
    if separable:
        _assert_exact(entry)
    else:
        _assert_refused(entry, ssld)


def test_non_separable_losses_do_change_under_accumulation():
    """What the refusal protects against: DIST's and RKD's updates differ once the batch is split."""
    for type_ in ("dist", "rkd"):
        full, _ = _one_update(_entry(type_), 1)
        split, _ = _one_update(_entry(type_), ACCUM)
        a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (split, full))
        assert np.linalg.norm(b) > 0 and np.linalg.norm(a - b) > 0.05 * np.linalg.norm(b), type_
