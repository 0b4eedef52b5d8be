"""SKD (spherical knowledge distillation, Guo et al. 2020) as PaddleClas' SKDLoss, frozen teacher.

Both logits are layer-normalised over the classes and scaled by `multiplier` (a fixed norm: the "sphere"), then
α · T² · soft-CE(teacher ‖ student) + (1 − α) · CE(student, labels) in one loss, so there is no separate
ground-truth entry. PaddleClas resnet34_distill_resnet18_skd.yaml, line by line:
  Teacher ResNet34 frozen, pretrained; Student ResNet18       → models.Teacher / models.Student
  DistillationSKDLoss weight 1.0, T=1.0, multiplier 2.0, alpha 0.9, pairs [Student, Teacher]
                                                              → losses.skd (labels as target; the teacher's
                                                                argmax where a row has none)

  --config=configs/skd.py            offline default (Fashion-MNIST, teacher trained first)
  --config=configs/skd.py:imagenet   the PaddleClas ImageNet recipe (give --config.models.Teacher.init)

Run: `python -m kdjax.main --config=configs/skd.py --workdir=runs/skd` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.87 ± 0.21% top-1; the distillation phase took a median
52 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.skd = loss_entry("skd", 1.0, pairs=[["Student", "Teacher"]], temperature=1.0, multiplier=2.0,
                              alpha=0.9)
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c)
    elif arg:
        raise unknown_preset("configs/skd.py", arg, ["imagenet"])
    return c
