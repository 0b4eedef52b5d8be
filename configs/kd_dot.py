"""KD + DOT (distillation-oriented trainer, Zhao et al., ICCV 2023): KD trained with separate momenta for the task
and the distillation gradients.

DOT (optim.name='dot', kdjax/optim/dot.py) keeps two momentum buffers: the task loss's gradient (gt_ce) gets momentum
μ − δ, the distillation loss's (kd) μ + δ, so the optimizer follows the distillation direction more steadily.
mdistiller's DOT recipes (configs/cifar100/dot/*.yaml) are all KD:
  KD distiller: CE_WEIGHT 0.1, KD_WEIGHT 0.9, T = 4          → losses.gt_ce 0.1, losses.kd 0.9 (T=4)
  SOLVER.TRAINER dot, MOMENTUM 0.9, DOT.DELTA 0.075          → optim.name='dot', momentum 0.9, delta 0.075
                                                               (no Nesterov: DOT is plain momentum SGD)
The offline default keeps the offline KD loss weights (configs/kd.py: CE 1.0, KD 0.9) and the default schedule.

  python -m kdjax.main --config=configs/kd_dot.py --workdir=runs/kd_dot
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/kd_dot.py:cifar100   mdistiller KD+DOT, resnet32x4 → resnet8x4: CE 0.1 + KD 0.9 (T=4), lr 0.05,
                                        momentum 0.9 ± 0.075, weight decay 5e-4, 240 epochs
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def _dot(c, delta=0.075):
    with c.unlocked():
        c.optim.name = "dot"
        c.optim.nesterov = False
        c.optim.momentum = 0.9
        c.optim.delta = delta


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.kd = loss_entry("kd", 0.9, pairs=[["Student", "Teacher"]], temperature=4.0)
    c.export_model = "Student"
    _dot(c)
    if arg == "cifar100":
        cifar100(c)
        _dot(c)
        c.losses.gt_ce.weight = 0.1
    elif arg:
        raise unknown_preset("configs/kd_dot.py", arg, ["cifar100"])
    return c
