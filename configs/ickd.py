"""ICKD (inter-channel correlation, Liu et al., ICCV 2021): ground-truth CE + ICKD on the last stage's maps.

ICKD (losses.ickd) embeds the student's map with a 1×1 conv + BatchNorm to the teacher's width and matches the
row-normalised channel Gram matrices (inter-channel correlations) of the two. The authors' CIFAR-100 recipe
(ADLab-AutoDrive/ICKD, Cifar100/scripts/run_cifar_distill.sh: `--distill ickd -a 0 -b 2.5`, γ = 1):
  CE weight γ = 1.0 [Student]                         → losses.gt_ce
  ICKDLoss on feat[-2] (the last block's output), β = 2.5
                                                      → losses.ickd on blocks[2] (3×3×32 → embedded to 128 channels,
                                                        vs the teacher's 3×3×128)

  python -m kdjax.main --config=configs/ickd.py --workdir=runs/ickd
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/ickd.py:cifar100      ICKD: resnet32x4 → resnet8x4, stages[2], CE 1.0 + 2.5 · ICKD
  --config=configs/ickd.py:cifar100_kl   the authors' "ICKD+KL" line (-a 1 -b 2.5): plus KD 1.0, T=4
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
    c.losses.ickd = loss_entry("ickd", 2.5, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys)
    c.export_model = "Student"
    if arg in ("cifar100", "cifar100_kl"):
        keys = ["stages[2]"]
        cifar100(c, teacher_capture=keys, student_capture=keys)
        c.losses.ickd = loss_entry("ickd", 2.5, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys)
        if arg == "cifar100_kl":
            c.losses.kd = loss_entry("kd", 1.0, pairs=[["Student", "Teacher"]], temperature=4.0)
    elif arg:
        raise unknown_preset("configs/ickd.py", arg, ["cifar100", "cifar100_kl"])
    return c
