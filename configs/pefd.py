"""PEFD (Chen et al., NeurIPS 2022, projector ensemble feature distillation), frozen teacher.

Three projectors (1×1 conv / Dense + ReLU) map the student's penultimate feature to the teacher's width; their
mean is matched to the teacher feature by cosine distance. The projectors are trained with the student and never
exported. PaddleClas resnet34_distill_resnet18_pefd.yaml, line by line:
  Teacher ResNet34 frozen, return_patterns [avg_pool]; Student ResNet18, return_patterns [avg_pool]
  DistillationGTCELoss weight 1.0 [Student]                                     → losses.gt_ce
  DistillationPairLoss(PEFDLoss) weight 25.0, s_key/t_key avg_pool, student_channel 512,
      teacher_channel 512 (num_projectors 3)                                    → losses.pefd

  --config=configs/pefd.py            offline default: avg_pool 32 → 128 channels
  --config=configs/pefd.py:imagenet   the PaddleClas ResNet34 → ResNet18 recipe (give --config.models.Teacher.init)

Run: `python -m kdjax.main --config=configs/pefd.py --workdir=runs/pefd` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.74 ± 0.14% top-1; the distillation phase took a median
55 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
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
    c.losses.pefd = loss_entry("pefd", 25.0, pairs=[["Student", "Teacher"]], s_key="avg_pool", t_key="avg_pool",
                               student_channels=32, teacher_channels=128, num_projectors=3)
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c, teacher_capture=["avg_pool"], student_capture=["avg_pool"])
        c.losses.pefd = loss_entry("pefd", 25.0, pairs=[["Student", "Teacher"]], s_key="avg_pool",
                                   t_key="avg_pool", student_channels=512, teacher_channels=512, num_projectors=3)
    elif arg:
        raise unknown_preset("configs/pefd.py", arg, ["imagenet"])
    return c
