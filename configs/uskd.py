"""USKD (Universal Self-KD, Yang et al., ICCV 2023): self-distillation without a teacher. The model's own target
confidence makes its target soft label, Zipf-distributed non-target labels come from the ranking of a weak classifier
on a mid-level feature plus the model's log-probabilities (yzd-v/cls_KD's USKDLoss), added to the CE:
  CE ×1.0 [Student]                                                → losses.gt_ce
  USKDLoss alpha 1, beta 0.1, mu 0.005 (ImageNet ResNet setting),
  mid feature = the penultimate stage, pooled                       → losses.uskd 1.0 on key `blocks[1]`
  its weak classifier fc (channel → C)                              → a learnable loss parameter (train state)

  --config=configs/uskd.py            offline default: Fashion-MNIST, `convnet_student` alone (nothing trained first)
  --config=configs/uskd.py:cifar100   USKD's CIFAR-100 hyper-parameters (cls_KD's res18_sd_cifar.py: alpha 0.1,
                                      beta 0.1, mu 0.1) on resnet8x4 (mid feature `stages[1]`, 128 channels) with
                                      mdistiller's 240-epoch schedule; cls_KD's CIFAR ResNet-18 is not in the zoo

Offline default: `python -m kdjax.main --config=configs/uskd.py --workdir=/tmp/uskd`; its accuracy is not measured
yet (configs/sweep_fashion_mnist.py runs it with 3 seeds at the shared budget).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Student = model_entry("convnet_student", capture=["blocks[1]"])
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.uskd = loss_entry("uskd", 1.0, models=["Student"], key="blocks[1]", alpha=1.0, beta=0.1, mu=0.005)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c)
        del c.models["Teacher"]
        c.models.Student.capture = ("stages[1]",)
        c.losses.uskd = loss_entry("uskd", 1.0, models=["Student"], key="stages[1]", alpha=0.1, beta=0.1, mu=0.1)
    elif arg:
        raise unknown_preset("configs/uskd.py", arg, ["cifar100"])
    return c
