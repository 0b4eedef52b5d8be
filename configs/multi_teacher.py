"""Multi-teacher KD: ground-truth CE + one KL-divergence term per frozen teacher (averaged teachers' KD).

Two different teachers, both trained first on the same data (init='train'): Teacher1 is convnet_teacher,
Teacher2 the same CNN with two convolutions per stage (`ConvNet`, depth=2). Pre-training uses one seed for every
model, so two identical teachers would come out bit-identical: they must differ in architecture or kwargs.
Each teacher gets its own kd entry (PaddleClas: one DistillationKLDivLoss per [Student, Teacher_i] pair), with
KD's 0.9 split evenly:
  CE weight 1.0 [Student]                         → losses.gt_ce
  KD weight 0.45, T=4, pairs [Student, Teacher1]  → losses.kd_teacher1
  KD weight 0.45, T=4, pairs [Student, Teacher2]  → losses.kd_teacher2

  --config=configs/multi_teacher.py    offline default (Fashion-MNIST, both teachers trained first)

Run: `python -m kdjax.main --config=configs/multi_teacher.py --workdir=runs/multi_teacher` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.94 ± 0.16% top-1; the distillation phase took a median
62 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher1 = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Teacher2 = model_entry("ConvNet", frozen=True, init="train", depth=2, stem_stride=2)
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.kd_teacher1 = loss_entry("kd", 0.45, pairs=[["Student", "Teacher1"]], temperature=4.0)
    c.losses.kd_teacher2 = loss_entry("kd", 0.45, pairs=[["Student", "Teacher2"]], temperature=4.0)
    c.export_model = "Student"
    if arg:
        raise unknown_preset("configs/multi_teacher.py", arg, [])
    return c
