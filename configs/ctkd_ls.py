"""CTKD with logit standardization (Sun et al., CVPR 2024, on Li et al.'s CTKD): configs/ctkd.py with both logits
z-scored inside the KD term (the logit-standardization repo's CTKD/ `DistillKL_logit_stand`, which its
train_student.py picks unless `--logit_stand` is given — the flag's sense is inverted there — and which its script
runs: `-r 0.1 -a 9 --kd_T 2`, the learnable temperature replacing kd_T):
  CE ×0.1                                                       → losses.gt_ce
  KD on z-scored logits ×9, learnable T, same curriculum        → losses.ctkd (logit_stand=True)

  --config=configs/ctkd_ls.py            offline default: Fashion-MNIST, small CNNs, teacher trained first
  --config=configs/ctkd_ls.py:cifar100   resnet56 → resnet20, the repo's CIFAR-100 script (batch 64, lr 0.05,
                                         240 epochs ×0.1 at 150/180/210, weight decay 5e-4)

Offline default: `python -m kdjax.main --config=configs/ctkd_ls.py --workdir=/tmp/ctkd_ls`; its accuracy is not measured
yet (configs/sweep_fashion_mnist.py runs it with 3 seeds at the shared budget).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset

CTKD = dict(t_start=1.0, t_end=20.0, init=1.0, decay_loops=10.0, lambda_max=0.0, lambda_min=-1.0)


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.gt_ce = loss_entry("gt_ce", 0.1, models=["Student"])
    c.losses.ctkd = loss_entry("ctkd", 9.0, pairs=[["Student", "Teacher"]], base="kd", logit_stand=True, **CTKD)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c, teacher="resnet56", student="resnet20")
    elif arg:
        raise unknown_preset("configs/ctkd_ls.py", arg, ["cifar100"])
    return c
