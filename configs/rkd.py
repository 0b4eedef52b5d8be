"""RKD (Park et al., CVPR 2019): distance-wise and angle-wise relations between samples' embeddings.

PaddleClas' DistillationRKDLoss, with ground-truth CE:
  DistillationGTCELoss weight 1.0 [Student]                                  → losses.gt_ce
  DistillationRKDLoss weight 1.0, pairs [Student, Teacher], one key pair,
      target_size None (no pooling)                                           → losses.rkd on avg_pool

  --config=configs/rkd.py            offline default (Fashion-MNIST, teacher trained first)
  --config=configs/rkd.py:imagenet   ResNet34 → ResNet18 (give --config.models.Teacher.init)
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=["avg_pool"])
    c.models.Student = model_entry("convnet_student", capture=["avg_pool"])
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.rkd = loss_entry("rkd", 1.0, pairs=[["Student", "Teacher"]], key="avg_pool", target_size=None,
                              angle_weight=1.0, distance_weight=1.0)
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c, teacher_capture=["avg_pool"], student_capture=["avg_pool"])
    elif arg:
        raise unknown_preset("configs/rkd.py", arg, ["imagenet"])
    return c
