"""`python -m kdjax.export --workdir=DIR [--model=X] [--step=N | --best] --out=DIR2` end to end: the export of any
sub-model at any checkpoint (or the best one) gives, through `kdjax.infer`, the logits that checkpoint gives when
restored the way training restores it (full train state, Trainer); training keeps best/ by top-1 and says which step;
a frozen model exports as its init."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, load_config, tiny


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Tiny DML (both models trained): 8 steps, evaluated and checkpointed every 2, PaddleClas' metric names."""
    from kdjax import train

    cfg = tiny(load_config("configs/dml.py"), train_limit=256, test_limit=200, epochs=2.0)
    with cfg.unlocked():
        cfg.train.eval_every_epochs = 0.5
        cfg.train.checkpoint_every_steps = 2
        cfg.train.keep_checkpoints = 10
        cfg.train.eval_batch_size = 200
        cfg.metric_names = "paddleclas"
    workdir = tmp_path_factory.mktemp("dml")
    summary = train.run(cfg, str(workdir))
    return cfg, str(workdir), summary


def _checkpoint_logits(cfg, workdir, step, images):
    """Every model's logits at checkpoint `step`, restored as training restores (abstract TrainState, Trainer)."""
    import orbax.checkpoint as ocp

    from kdjax.config.check import check
    from kdjax.models.distillation import normalize
    from kdjax.runtime.checkpoints import PhaseCheckpoints
    from kdjax.steps import build_optimizer
    from kdjax.trainer import Trainer

    checked = check(cfg)  # the training split too: it decides the channels and the normalisation, as in training
    trainer = Trainer(cfg, workdir, checked.train, checked.test, checked.info, "test")
    tx, _ = build_optimizer(cfg.optim, 1, 1)
    state, frozen = trainer.initial_state(tx)
    ckpts = PhaseCheckpoints(os.path.join(workdir, "checkpoints"), read_only=True)
    try:
        state = ckpts.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(trainer.parallel.abstract(state)))).state
    finally:
        ckpts.close()
    x = normalize(images, trainer.mean, trainer.std)
    outputs, _ = trainer.model.apply(state.params, state.batch_stats, frozen, x, train=False,
                                     rng=jax.random.PRNGKey(0))
    return {name: np.asarray(out["logits"]) for name, out in outputs.items()}


def _test_images(cfg, n=16):
    from kdjax.data.sources import open_source

    source, _ = open_source(cfg.data, "test")
    return np.stack([np.asarray(source[i]["image"]) for i in range(n)])


def _export(workdir, out, *flags):
    proc = subprocess.run([sys.executable, "-m", "kdjax.export", f"--workdir={workdir}", f"--out={out}", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _infer(export_dir, pngs):
    proc = subprocess.run([sys.executable, "-m", "kdjax.infer", f"--export_dir={export_dir}", "--topk=10", *pngs],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.strip().splitlines()]


def test_best_model_is_kept_and_reported(run):
    _, workdir, summary = run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [json.loads(line) for line in f if '"eval"' in line]
    best = max(evals, key=lambda r: (r["Student/top1"], -r["step"]))  # the first of equal top-1s is kept
    assert summary["best"]["step"] == best["step"] and summary["best"]["top1"] == pytest.approx(best["Student/top1"])
    with open(os.path.join(workdir, "best", "spec.json")) as f:
        assert json.load(f)["best"]["step"] == best["step"]
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["best"]["step"] == best["step"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last_train = [json.loads(line) for line in f if '"train"' in line][-1]
    assert {"CELoss_Student", "CELoss_Teacher", "DMLLoss_Student_Teacher_0"} <= set(last_train)


@pytest.mark.parametrize("model,how", [("Student", "--step=4"), ("Teacher", "--step=4"), ("Teacher", "--step=8"),
                                       ("Student", "--best"), ("Teacher", "--best")])
def test_exported_model_reproduces_the_checkpoint(run, model, how, tmp_path):
    from kdjax.models.distillation import normalize
    from kdjax.weights.export_dir import export_logits_fn

    cfg, workdir, summary = run
    out = str(tmp_path / "export")
    said = _export(workdir, out, f"--model={model}", how)
    step = summary["best"]["step"] if how == "--best" else int(how.split("=")[1])
    assert f"exported {model} of {workdir}" in said
    with open(os.path.join(out, "spec.json")) as f:
        spec = json.load(f)
    assert spec["model_name"] == model and spec["source"]["step"] == step
    images = _test_images(cfg)
    expected = _checkpoint_logits(cfg, workdir, step, images)[model]
    logits_fn, spec = export_logits_fn(out)
    got = np.asarray(logits_fn(normalize(images, spec["mean"], spec["std"])))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if how == "--best" or model == "Teacher" and step == 4:  # and through the kdjax.infer command, from PNG files
        from PIL import Image

        pngs = []
        for i, img in enumerate(images[:4]):
            pngs.append(str(tmp_path / f"{i}.png"))
            Image.fromarray(img[..., 0]).save(pngs[-1])
        probs = np.asarray(jax.nn.softmax(expected[:4]))
        for row, p in zip(_infer(out, pngs), probs):
            assert row["class_ids"][0] == int(np.argmax(p))
            np.testing.assert_allclose(row["scores"], p[row["class_ids"]], atol=2e-5)


def test_export_errors_are_one_line(run, tmp_path):
    _, workdir, _ = run
    proc = subprocess.run([sys.executable, "-m", "kdjax.export", f"--workdir={workdir}", "--step=3",
                           f"--out={tmp_path / 'x'}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"kdjax.export: error: {workdir}/checkpoints has no step 3; it has "
                                                    f"2, 4, 6, 8 (the newest train.keep_checkpoints are kept)")


def test_frozen_model_exports_as_its_init(tmp_path):
    from kdjax.weights.export_dir import load_export
    from kdjax.weights.from_workdir import export_from_workdir

    sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
    from test_bad_input import write_teacher  # a random-weights convnet_teacher export
    from kdjax import train

    teacher = write_teacher(tmp_path / "teacher")
    cfg = tiny(load_config("configs/kd.py"), train_limit=128, test_limit=100, epochs=1.0)
    with cfg.unlocked():
        cfg.models.Teacher.init = teacher
        cfg.train.eval_batch_size = 100
    train.run(cfg, str(tmp_path / "run"))
    source = export_from_workdir(str(tmp_path / "run"), str(tmp_path / "out"), model="Teacher")
    assert source["frozen"]
    ours, spec = load_export(str(tmp_path / "out"))
    theirs, _ = load_export(teacher)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert spec["model_name"] == "Teacher" and spec["arch"] == "convnet_teacher"
