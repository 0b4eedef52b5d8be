"""FitNet (Romero et al., ICLR 2015): ground-truth CE + a hint loss from a teacher feature map.

The hint loss (losses.fitnet) is the MSE between the teacher's "hint" map and the student's "guided" map sent
through a learned regressor. The paper's regressor is a convolution whose kernel makes the sizes match (1×1
here: both maps are 7×7) followed by the hint's non-linearity (ReLU); it is trained with the student and never
exported. Single-stage training with the hint weight of RepDistiller / mdistiller (β = 100, hint layer 2 of 3):
  DistillationGTCELoss-style CE weight 1.0 [Student]                  → losses.gt_ce
  hint: student blocks[1] (7×7×16) → 1×1 conv + ReLU → teacher blocks[1] (7×7×64), MSE, weight 100
                                                                       → losses.fitnet

  --config=configs/fitnet.py            offline default (Fashion-MNIST, teacher trained first)
  --config=configs/fitnet.py:cifar100   mdistiller FitNet: resnet32x4 → resnet8x4, hint on stages[1] (layer2),
                                        ConvReg (3×3 conv + BN + ReLU), CE 1.0 + hint 100

Run: `python -m kdjax.main --config=configs/fitnet.py --workdir=runs/fitnet` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 87.29 ± 0.20% top-1; the distillation phase took a median
88 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=["blocks[1]"])
    c.models.Student = model_entry("convnet_student", capture=["blocks[1]"])
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.fitnet = loss_entry("fitnet", 100.0, pairs=[["Student", "Teacher"]], s_key="blocks[1]",
                                 t_key="blocks[1]", regressor="conv", relu=True)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c, teacher_capture=["stages[1]"], student_capture=["stages[1]"])
        c.losses.fitnet = loss_entry("fitnet", 100.0, pairs=[["Student", "Teacher"]], s_key="stages[1]",
                                     t_key="stages[1]", regressor="conv3x3", relu=True)
    elif arg:
        raise unknown_preset("configs/fitnet.py", arg, ["cifar100"])
    return c
