"""MGD (Yang et al., ECCV 2022): masked generative distillation on a student feature map.

PaddleClas' resnet34_distill_resnet18_mgd.yaml (ppcls/configs/ImageNet/Distillation/), line by line:
  Teacher ResNet34 frozen, return_patterns [blocks[2], blocks[6], blocks[12], blocks[15]]
  Student ResNet18, return_patterns [blocks[1], blocks[3], blocks[5], blocks[7]]
  DistillationGTCELoss weight 1.0 [Student]                        → losses.gt_ce
  DistillationPairLoss(MGDLoss) weight 1.0, s_keys [blocks[7]], t_keys [blocks[15]],
      student_channels 512, teacher_channels 512                   → losses.mgd

  --config=configs/mgd.py            offline default: student blocks[2] (32 ch) → teacher blocks[2] (128 ch),
                                     so the 1×1 alignment conv is used
  --config=configs/mgd.py:imagenet   PaddleClas' ResNet34 → ResNet18 recipe
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=["blocks[2]"])
    c.models.Student = model_entry("convnet_student", capture=["blocks[2]"])
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.mgd = loss_entry("mgd", 1.0, pairs=[["Student", "Teacher"]], s_key="blocks[2]", t_key="blocks[2]",
                              student_channels=32, teacher_channels=128)
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c, teacher_capture=["blocks[2]", "blocks[6]", "blocks[12]", "blocks[15]"],
                 student_capture=["blocks[1]", "blocks[3]", "blocks[5]", "blocks[7]"])
        c.losses.mgd = loss_entry("mgd", 1.0, pairs=[["Student", "Teacher"]], s_key="blocks[7]",
                                  t_key="blocks[15]", student_channels=512, teacher_channels=512)
    elif arg:
        raise unknown_preset("configs/mgd.py", arg, ["imagenet"])
    return c
