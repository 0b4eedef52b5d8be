"""DIST (Huang et al., 2022): inter- and intra-class Pearson relations to a frozen teacher.

PaddleClas' resnet34_distill_resnet18_dist.yaml (ppcls/configs/ImageNet/Distillation/), line by line:
  DistillationGTCELoss weight 1.0 [Student]                       → losses.gt_ce
  DistillationDISTLoss weight 2.0, pairs [Student, Teacher]       → losses.dist (beta=1, gamma=1)

  --config=configs/dist.py           offline default (Fashion-MNIST, teacher trained first)
  --config=configs/dist.py:imagenet  ResNet34 → ResNet18 (give --config.models.Teacher.init)
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.dist = loss_entry("dist", 2.0, pairs=[["Student", "Teacher"]], beta=1.0, gamma=1.0)
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c)
    elif arg:
        raise unknown_preset("configs/dist.py", arg, ["imagenet"])
    return c
