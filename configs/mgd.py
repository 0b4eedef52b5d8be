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

Run: `python -m kdjax.main --config=configs/mgd.py --workdir=runs/mgd` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.38 ± 0.24% top-1; the distillation phase took a median
292 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
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
