"""DeiT in the sweep: a method whose student cannot be swapped for the sweep's CNN keeps its config's student and
recipe and is paired against its own baseline row (that student alone on the labels), never the CNN baseline."""

import copy

import numpy as np
import pytest

from conftest import load_config
from kdjax.config.check import check
from kdjax.errors import ConfigError
from kdjax.tools import sweep as sw, sweep_configs as sc
from kdjax.tools import sweep_readme, sweep_report


def test_deit_keeps_its_vit_and_recipe_and_its_baseline_row_is_that_vit_alone():
    sweep = load_config("configs/sweep_fashion_mnist.py")
    deit_config = load_config("configs/deit.py")
    deit = sc.method_config(sweep, "deit", 3, "/teacher/export")
    own = deit_config.models.Student
    assert (deit.models.Student.arch, dict(deit.models.Student.kwargs)) == (own.arch, dict(own.kwargs))
    assert deit.models.Student.kwargs["distilled"] and tuple(deit.models.Student.capture) == ("logits_dist",)
    # the teacher is the sweep's trained teacher, not the DeiT config's own init='train' one
    assert (deit.models.Teacher.arch, deit.models.Teacher.init) == (sweep.teacher.arch, "/teacher/export")
    assert deit.optim.to_dict() == deit_config.optim.to_dict() != sweep.base.optim.to_dict()
    assert (deit.train.batch_size, deit.train.epochs) == (deit_config.train.batch_size, deit_config.train.epochs)
    assert deit.data.holdout == sweep.base.data.holdout and deit.seed == 3  # the sweep's data and seeds

    base = sc.method_config(sweep, "baseline_deit", 3, "/teacher/export")
    assert list(base.models) == ["Student"] and list(base.losses) == ["gt_ce"]
    kwargs = dict(own.kwargs, distilled=False)
    assert (base.models.Student.arch, dict(base.models.Student.kwargs)) == (own.arch, kwargs)
    assert base.optim.to_dict() == deit.optim.to_dict() and base.train.batch_size == deit.train.batch_size
    assert base.train.epochs == deit.train.epochs and base.seed == 3
    for method in ("deit", "baseline_deit"):
        for settings in sw.grid_trials(sweep, method):
            check(sc.run_config(sweep, method, 0, "/t", settings), splits=(), inits=False)

    assert sc.paired_with(sweep, "deit") == "baseline_deit" and sc.paired_with(sweep, "kd") == "baseline"
    assert sc.paired_with(sweep, "baseline_deit") is None and sc.is_baseline(sweep, "baseline_deit")
    assert sc.teachers_needed(sweep, "baseline_deit") == () and sc.teachers_needed(sweep, "deit") == ("",)
    assert sc.recipe_text(sweep, "kd") == "" and "ViT(" in sc.recipe_text(sweep, "deit")


def test_an_own_student_row_without_its_baseline_row_is_refused():
    sweep = load_config("configs/sweep_fashion_mnist.py")
    with sweep.unlocked():
        sweep.methods = tuple(m for m in sweep.methods if m != "baseline_deit")
    with pytest.raises(ConfigError, match="own_student.deit"):
        sw._check_protocol(sweep)


@pytest.mark.parametrize("row", ["baseline", "kd", "deit", ""])
def test_a_baseline_row_named_like_the_baseline_or_a_method_is_refused(row):
    """Else DeiT would silently pair with the CNN baseline, or KD would become a ViT trained alone."""
    sweep = load_config("configs/sweep_fashion_mnist.py")
    with sweep.unlocked():
        sweep.own_student.deit.baseline = row
    with pytest.raises(ConfigError, match="own_student.deit.baseline"):
        sw._check_protocol(sweep)


def _record(accs, paired_with="baseline", recipe=""):
    accs = [a / 100 for a in accs]
    return {"seeds": list(range(len(accs))), "last": accs, "best": accs, "paired_with": paired_with,
            "recipe": recipe, "settings": {"losses.deit.params.distillation_type": "hard"},
            "trials": [{"settings": {"losses.deit.params.distillation_type": t}, "val_top1": 0.5, "seconds": 1.0}
                       for t in ("hard", "soft")], "chosen": 0, "best_step": [1] * len(accs),
            "seconds": [1.0] * len(accs), "curves": [[(1, 0.5)]] * len(accs)}


def test_gains_pair_each_row_with_its_own_baseline():
    cnn, kd = [88.0, 88.5, 88.2], [88.6, 88.9, 89.0]
    vit, deit = [84.0, 84.6, 84.1], [84.3, 85.4, 84.2]
    results = {"protocol": {}, "methods": {
        "baseline": _record(cnn, None), "kd": _record(kd),
        "deit": _record(deit, "baseline_deit", "student `ViT(...)`"),
        "baseline_deit": _record(vit, None, "student `ViT(...)`")}}
    stats = sweep_report.add_statistics(copy.deepcopy(results))["stats"]["last"]
    assert set(stats) == {"kd", "deit"} == set(sweep_report.compared(results))
    assert stats["deit"]["mean"] == pytest.approx(np.mean(np.subtract(deit, vit)), abs=1e-9)
    assert stats["kd"]["mean"] == pytest.approx(np.mean(np.subtract(kd, cnn)), abs=1e-9)
    # a report written before rows carried `paired_with` pairs every row with the baseline, as it was run
    for r in results["methods"].values():
        r.pop("paired_with")
    old = sweep_report.add_statistics(copy.deepcopy(results))["stats"]["last"]
    assert old["deit"]["mean"] == pytest.approx(np.mean(np.subtract(deit, cnn)), abs=1e-9)


def test_the_readme_block_names_the_pairing_and_prints_text_settings():
    results = {"protocol": {"student": "convnet_student", "epochs": 4.0}, "teacher": {"arch": "t", "top1": 0.9},
               "methods": {"baseline": _record([88.0, 88.5, 88.2], None),
                           "deit": _record([84.3, 85.4, 84.2], "baseline_deit", "student `ViT(x=1)`, adamw"),
                           "baseline_deit": _record([84.0, 84.6, 84.1], None, "student `ViT(x=0)`, adamw")}}
    text = sweep_readme.block(results, "docs/results/x/results.json")
    assert "`deit` runs on its config's own student and recipe (student `ViT(x=1)`, adamw); its gain is over " \
           "`baseline_deit`" in text
    row = next(line for line in text.splitlines() if line.startswith("| deit |"))
    assert "distillation_type=hard" in row and "deit.distillation_type {hard, soft}" in row
    assert next(line for line in text.splitlines() if line.startswith("| baseline_deit |")).count("–") >= 3
