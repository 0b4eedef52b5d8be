"""SP (similarity-preserving KD, Tung & Mori, ICCV 2019): ground-truth CE + SP on the last stage's maps.

SP (losses.sp) compares the batch similarity matrices G = normalize(F Fᵀ) of student and teacher feature maps.
mdistiller's SP distiller:
  CE weight 1.0 [Student]                                   → losses.gt_ce
  sp_loss([feats_s[-1]], [feats_t[-1]]), FEAT_WEIGHT 3000  → losses.sp on the last stage, blocks[2] (3×3×32 vs
                                                              3×3×128 here)

  python -m kdjax.main --config=configs/sp.py --workdir=runs/sp
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/sp.py:cifar100   mdistiller SP: resnet32x4 → resnet8x4, stages[2], CE 1.0 + 3000 · SP
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    keys = ["blocks[2]"]
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=keys)
    c.models.Student = model_entry("convnet_student", capture=keys)
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.sp = loss_entry("sp", 3000.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys)
    c.export_model = "Student"
    if arg == "cifar100":
        keys = ["stages[2]"]
        cifar100(c, teacher_capture=keys, student_capture=keys)
        c.losses.sp = loss_entry("sp", 3000.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys)
    elif arg:
        raise unknown_preset("configs/sp.py", arg, ["cifar100"])
    return c
