"""Paired seeds: seed s gives a sub-model the same initial weights whatever other models the config names.

A method's gain over the CE baseline is only the method's if the Student starts from the same weights in both
runs; init used to fold the rng by the model's index in config order. ml_collections iterates keys sorted, so
"Student" happened to be index 0 beside "Teacher"/"Teacher1"; any model named before it ("Assistant", "Peer")
shifted the Student's init away from the Student-only baseline's.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdjax.config.defaults import model_entry
from kdjax.models.distillation import DistillationModel, build_submodels

X = jnp.zeros((2, 28, 28, 1), jnp.float32)


def _init(entries: dict, seed: int = 0):
    model = DistillationModel(build_submodels(ml_collections.ConfigDict(entries), 10))
    return model, model.init_variables(jax.random.PRNGKey(seed), X)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_student_init_does_not_depend_on_a_preceding_teacher():
    _, alone = _init({"Student": model_entry("convnet_student")})
    # "Assistant" and "Peer" sort before "Student" in the ConfigDict, so they precede it in config order
    _, after = _init({"Assistant": model_entry("convnet_teacher", frozen=True),
                      "Student": model_entry("convnet_student")})
    _, after_peer = _init({"Peer": model_entry("convnet_student"), "Student": model_entry("convnet_student")})
    assert _same(alone["Student"], after["Student"])
    assert _same(alone["Student"], after_peer["Student"])


def test_config_order_is_sorted_so_assistant_precedes_student():
    m, _ = _init({"Student": model_entry("convnet_student"), "Assistant": model_entry("convnet_teacher")})
    assert m.names == ["Assistant", "Student"]


def test_same_arch_peers_start_apart_and_seeds_differ():
    # DML/UDML: two peers of one architecture must not start identical (they would stay identical)
    _, v = _init({"Teacher": model_entry("convnet_student"), "Student": model_entry("convnet_student")})
    assert not _same(v["Teacher"]["params"], v["Student"]["params"])
    _, other_seed = _init({"Student": model_entry("convnet_student")}, seed=1)
    assert not _same(v["Student"]["params"], other_seed["Student"]["params"])


def test_student_training_forward_does_not_depend_on_a_preceding_teacher():
    # the per-model rng of apply (dropout) follows the name too; the outputs in training mode agree
    m1, v1 = _init({"Student": model_entry("convnet_student")})
    m2, v2 = _init({"Assistant": model_entry("convnet_teacher", frozen=True),
                    "Student": model_entry("convnet_student")})
    x = jax.random.normal(jax.random.PRNGKey(3), X.shape)
    rng = jax.random.PRNGKey(7)
    o1, _ = m1.apply({"Student": v1["Student"]["params"]}, {"Student": v1["Student"]["batch_stats"]}, {}, x,
                     train=True, rng=rng)
    o2, _ = m2.apply({"Student": v2["Student"]["params"]}, {"Student": v2["Student"]["batch_stats"]},
                     {"Assistant": v2["Assistant"]}, x, train=True, rng=rng)
    np.testing.assert_array_equal(o1["Student"]["logits"], o2["Student"]["logits"])
