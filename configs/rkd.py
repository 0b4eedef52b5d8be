"""RKD (Park et al., CVPR 2019): distance-wise and angle-wise relations between samples' embeddings.

PaddleClas' DistillationRKDLoss, with ground-truth CE:
  DistillationGTCELoss weight 1.0 [Student]                                  → losses.gt_ce
  DistillationRKDLoss weight 1.0, pairs [Student, Teacher], one key pair,
      target_size None (no pooling)                                           → losses.rkd on avg_pool

  --config=configs/rkd.py            offline default (Fashion-MNIST, teacher trained first)
  --config=configs/rkd.py:imagenet   ResNet34 → ResNet18 (give --config.models.Teacher.init)

Run: `python -m kdjax.main --config=configs/rkd.py --workdir=runs/rkd` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.32 ± 0.13% top-1; the distillation phase took a median
183 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
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
