"""WSL (Zhou et al., ICLR 2021): weighted soft labels, per-sample weights from the student/teacher CE ratio.

PaddleClas' resnet34_distill_resnet18_wsl.yaml (ppcls/configs/ImageNet/Distillation/), line by line:
  DistillationGTCELoss weight 1.0 [Student]                       → losses.gt_ce
  DistillationWSLLoss weight 2.5, T=2, pairs [Student, Teacher]   → losses.wsl

  --config=configs/wsl.py            offline default (Fashion-MNIST, teacher trained first)
  --config=configs/wsl.py:imagenet   ResNet34 → ResNet18 (give --config.models.Teacher.init)
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.wsl = loss_entry("wsl", 2.5, pairs=[["Student", "Teacher"]], temperature=2.0)
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c)
    elif arg:
        raise unknown_preset("configs/wsl.py", arg, ["imagenet"])
    return c
