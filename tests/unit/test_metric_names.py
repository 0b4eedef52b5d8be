"""config.metric_names: each loss term under kdjax's name or PaddleClas' CombinedLoss key (ppcls/loss/
distillationloss.py formats), for kdjax's own configs and for translated YAMLs with custom names; the progress line
shows the terms."""

import pytest

from conftest import load_config


def _labels(config):
    from kdjax.losses import build_losses
    from kdjax.config.metric_names import term_labels

    return term_labels(config, build_losses(list(config.losses.values())))


@pytest.mark.parametrize("path,expected", [
    ("configs/dkd.py", {"loss/gt_ce/Student": "CELoss_Student",
                        "loss/dkd/Student-Teacher": "loss_dkd_Student_Teacher"}),
    ("configs/kd.py", {"loss/kd/Student-Teacher": "loss_kldiv_Student_Teacher"}),
    ("configs/dml.py", {"loss/gt_ce/Teacher": "CELoss_Teacher",
                        "loss/dml/Student-Teacher": "DMLLoss_Student_Teacher_0"}),
    ("configs/udml.py", {"loss/distance/Student-Teacher": "loss_l2_loss_l2_0"}),
    ("configs/rkd.py", {"loss/rkd/Student-Teacher/angle": "loss_angle_0_Student_Teacher",
                        "loss/rkd/Student-Teacher/distance": "loss_dist_0_Student_Teacher"}),
    ("configs/mgd.py", {"loss/mgd/Student-Teacher": "loss_mgd_0_Student_Teacher"}),
    ("configs/afd.py", {"loss/afd/Student-Teacher": "loss_afd"}),
    ("configs/wsl.py", {"loss/wsl/Student-Teacher": "wsl_loss_Student_Teacher"}),
    ("configs/fitnet.py", {"loss/fitnet/Student-Teacher": "loss/fitnet/Student-Teacher"}),  # no PaddleClas wrapper
    ("configs/multi_teacher.py", {"loss/kd/Student-Teacher1": "loss_kldiv_Student_Teacher1",
                                  "loss/kd/Student-Teacher2": "loss_kldiv_Student_Teacher2"}),
])
def test_paddleclas_names_of_kdjax_configs(path, expected):
    config = load_config(path)
    assert all(k == v for k, v in _labels(config).items())  # the default: kdjax's names
    with config.unlocked():
        config.metric_names = "paddleclas"
    labels = _labels(config)
    assert {k: labels[k] for k in expected} == expected
    assert len(set(labels.values())) == len(labels)


def test_translated_yaml_keeps_its_custom_names(tmp_path):
    from kdjax.config.paddleclas import translate_file
    from kdjax.config.metric_names import rename

    from test_paddleclas_seed import seed_yaml

    config = translate_file(seed_yaml("dkd", tmp_path), ["Loss.Train.1.DistillationDKDLoss.name=my_dkd"])
    labels = _labels(config)
    assert labels["loss/dkd/Student-Teacher"] == "my_dkd_Student_Teacher"
    renamed = rename({"loss": 1.0, "loss/dkd/Student-Teacher": 0.5, "lr": 0.1}, labels)
    assert renamed == {"loss": 1.0, "my_dkd_Student_Teacher": 0.5, "lr": 0.1}
    with config.unlocked():
        config.metric_names = "kdjax"
    assert _labels(config)["loss/dkd/Student-Teacher"] == "loss/dkd/Student-Teacher"


def test_metric_names_field_is_checked():
    from kdjax.config.fields import check_fields
    from kdjax.errors import ConfigError

    config = load_config("configs/dkd.py")
    with config.unlocked():
        config.metric_names = "paddle"
    with pytest.raises(ConfigError, match=r"config\.metric_names: must be one of \['kdjax', 'paddleclas'\]"):
        check_fields(config)


def test_progress_line_shows_each_term(tmp_path):
    from kdjax.runtime.run_log import RunLog

    log = RunLog(str(tmp_path), 10, 0, 8, "test", postfix_keys=("CELoss_Student", "loss_dkd_Student_Teacher"))
    try:
        shown = log._postfix({"images_per_sec": 12.0, "loss": 1.5, "CELoss_Student": 1.25,
                              "loss_dkd_Student_Teacher": 0.25, "lr": 0.1})
    finally:
        log.close()
    assert shown == {"img/s": "12", "loss": "1.5000", "CELoss_Student": "1.2500", "loss_dkd_Student_Teacher": "0.2500"}


def test_a_translated_yamls_teacher_trained_first_gets_its_own_key(tmp_path):
    """The pretrain phase of init='train' trains gt_ce on the teacher: not the YAML's CELoss_Student."""
    from kdjax.config.paddleclas import translate_file
    from kdjax.train import pretrain_config

    from test_paddleclas_seed import seed_yaml

    config = translate_file(seed_yaml("dkd", tmp_path))
    with config.unlocked():
        config.models.Teacher.init = "train"
    assert _labels(pretrain_config(config, "Teacher")) == {"loss/gt_ce/Teacher": "CELoss_Teacher"}
    assert _labels(config)["loss/gt_ce/Student"] == "CELoss_Student"
