"""DKD (Decoupled Knowledge Distillation, CVPR 2022): ground-truth CE + DKD, frozen teacher.

Counterpart of PaddleClas' resnet34_distill_resnet18_dkd.yaml (seed document 1.2.5):
  DistillationGTCELoss weight 1.0 on Student; DistillationDKDLoss weight 1.0, T=1, alpha=1, beta=1.

  --config=configs/dkd.py            offline default: Fashion-MNIST, small CNNs, teacher trained first
"""

from kdjax.config_defaults import base_config, loss_entry, model_entry


def get_config(arg=None):
    c = base_config()
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.dkd = loss_entry("dkd", 1.0, pairs=[["Student", "Teacher"]], temperature=1.0, alpha=1.0, beta=1.0)
    c.export_model = "Student"
    if arg:
        raise ValueError(f"configs/dkd.py has no preset {arg!r}")
    return c
