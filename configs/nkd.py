"""NKD (Normalized KD, Yang et al., ICCV 2023): the target class as a CE weighted by the teacher's probability, plus
γ·τ² · soft CE over the non-target classes renormalised among themselves (yzd-v/cls_KD's NKDLoss), added to the CE:
  CE ×1.0 [Student]                                   → losses.gt_ce
  NKDLoss temp 1, gamma 1.5 (ImageNet ResNet setting)  → losses.nkd 1.0

  --config=configs/nkd.py            offline default: Fashion-MNIST, small CNNs, teacher trained first
  --config=configs/nkd.py:cifar100   NKD's CIFAR-100 hyper-parameters (cls_KD's res34_distill_res18_cifar.py:
                                     temp 3, gamma 3.5) on kdjax's CIFAR-100 pair resnet32x4 → resnet8x4 with
                                     mdistiller's 240-epoch schedule; cls_KD's own CIFAR pair (mmcls ResNet_CIFAR
                                     34 → 18) is not in kdjax's zoo

Offline default, measured once (2026-12-02, one seed, 1 epoch instead of 4 to fit a shared 2-core machine) with a
teacher trained first by the same code (convnet_teacher, 4 epochs: 91.38%):
  python -m kdjax.main --config=configs/nkd.py --workdir=/tmp/nkd --config.train.epochs=1 \
      --config.models.Teacher.init=<that teacher's export>
Student 86.46% top-1 after 1 epoch (468 steps of batch 128; 3 min 56 s wall, 0.67 GB peak RSS).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.nkd = loss_entry("nkd", 1.0, pairs=[["Student", "Teacher"]], temperature=1.0, gamma=1.5)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c)
        c.losses.nkd = loss_entry("nkd", 1.0, pairs=[["Student", "Teacher"]], temperature=3.0, gamma=3.5)
    elif arg:
        raise unknown_preset("configs/nkd.py", arg, ["cifar100"])
    return c
