"""DML (Zhang et al., CVPR 2018): two models of the same architecture learn from each other; no frozen teacher.

PaddleClas' PPLCNet_x2_5_dml.yaml (ppcls/configs/ImageNet/Distillation/), line by line:
  Teacher PPLCNet_x2_5, not frozen, not pretrained → models.Teacher (frozen=False)
  Student PPLCNet_x2_5, not frozen, not pretrained → models.Student
  DistillationGTCELoss weight 1.0 [Student, Teacher]              → losses.gt_ce
  DistillationDMLLoss weight 1.0, pairs [Student, Teacher]        → losses.dml

  --config=configs/dml.py            offline default: two small CNNs on Fashion-MNIST
  --config=configs/dml.py:imagenet   two PPLCNet_x2_5 on ImageNet-1k

Run: `python -m kdjax.main --config=configs/dml.py --workdir=runs/dml` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.09 ± 0.26% top-1; the distillation phase took a median
103 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_student")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student", "Teacher"])
    c.losses.dml = loss_entry("dml", 1.0, pairs=[["Student", "Teacher"]])
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c, teacher="PPLCNet_x2_5", student="PPLCNet_x2_5")
        c.models.Teacher = model_entry("PPLCNet_x2_5")
    elif arg:
        raise unknown_preset("configs/dml.py", arg, ["imagenet"])
    return c
