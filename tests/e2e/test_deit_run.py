"""configs/deit.py trained for a few steps on real Fashion-MNIST: a distilled DeiT student learns from a CNN teacher
trained first; the deit terms are logged and finite; evaluation (and the export) scores the average of the two heads,
checked against a manual computation from the exported weights."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config, tiny


@pytest.fixture(scope="module")
def deit_run(tmp_path_factory):
    from kdjax import train

    cfg = tiny(load_config("configs/deit.py"), train_limit=256, test_limit=250, batch=64, epochs=1.0,
               pretrain_epochs=1.0)
    workdir = tmp_path_factory.mktemp("deit")
    summary = train.run(cfg, str(workdir))
    return cfg, str(workdir), summary


def test_deit_terms_are_logged_and_finite(deit_run):
    _, workdir, summary = deit_run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rec = json.loads([line for line in f if '"train"' in line][-1])
    base, kd = rec["loss/deit/Student-Teacher/base"], rec["loss/deit/Student-Teacher/distillation"]
    assert np.isfinite(base) and np.isfinite(kd) and base > 0 and kd > 0
    assert rec["loss"] == pytest.approx(base + kd, rel=1e-5)  # deit is the only loss: L = (1-a)·CE + a·hard KD
    assert summary["pretrained"] == {"Teacher": os.path.join(workdir, "pretrain", "Teacher", "export")}


def test_eval_averages_the_two_heads(deit_run):
    from kdjax.data.sources import open_source
    from kdjax.models.distillation import normalize
    from kdjax.models.features import collect
    from kdjax.weights.export_dir import build_from_spec, load_export

    cfg, workdir, summary = deit_run
    variables, spec = load_export(os.path.join(workdir, "export"))
    model = build_from_spec(spec)
    source, _ = open_source(cfg.data, "test")
    images = np.stack([source[i]["image"] for i in range(len(source))])
    labels = np.array([int(source[i]["label"]) for i in range(len(source))])
    x = normalize(jnp.asarray(images), spec["mean"], spec["std"])

    @jax.jit
    def heads(v, x):
        logits, mutated = model.apply(v, x, train=False, mutable=["intermediates"])
        f = collect(mutated)
        return logits, f["logits_cls"], f["logits_dist"]

    logits, cls, dist = (np.asarray(a) for a in heads(variables, x))
    np.testing.assert_allclose(logits, (cls + dist) / 2, rtol=1e-5, atol=1e-6)  # what eval / infer score
    manual_top1 = float(np.mean(np.argmax((cls + dist) / 2, -1) == labels))
    assert summary["eval"]["count"] == len(labels)
    assert summary["eval"]["Student/top1"] == pytest.approx(manual_top1, abs=1e-9)
    assert not np.allclose(cls, dist)  # two different heads, so the average is not a no-op
