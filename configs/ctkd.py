"""CTKD (Curriculum Temperature KD, Li et al., AAAI 2023): KD whose temperature is a learnable parameter trained
adversarially through a gradient-reversal layer, λ growing from 0 to −1 on a cosine curriculum over the epochs
(zhengli97/CTKD, `--have_mlp 1 --mlp_name global`):
  CE ×0.1 (-r)                                       → losses.gt_ce
  KD ×0.9 (-a), T = 1 + 20·sigmoid(g), g learnable,
  λ: CosineDecay(0 → −1, 10 epochs)                  → losses.ctkd (g in the train state: checkpointed, not exported)

  --config=configs/ctkd.py            offline default: Fashion-MNIST, small CNNs, teacher trained first. Its 4
                                      epochs reach λ(4) = −0.35 of the curriculum (decay_loops stays 10, as in
                                      the reference)
  --config=configs/ctkd.py:cifar100   the authors' CIFAR-100 script (scripts/run_cifar_distill.sh): resnet56 →
                                      resnet20, 240 epochs, batch 64, SGD lr 0.05 ×0.1 at 150/180/210, weight
                                      decay 5e-4 (also on g), CE 0.1 + KD 0.9, t_start 1, t_end 20, 10 decay loops
  --config=configs/ctkd.py:dkd        CTKD with DKD instead of KD (the script's DKD line: -r 1 -a 0 -b 1,
                                      dkd_alpha 1, dkd_beta 2), offline default data and models

Offline default: `python -m kdjax.main --config=configs/ctkd.py --workdir=/tmp/ctkd`; its accuracy is not measured
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
    c.losses.ctkd = loss_entry("ctkd", 0.9, pairs=[["Student", "Teacher"]], base="kd", **CTKD)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c, teacher="resnet56", student="resnet20")
    elif arg == "dkd":
        c.losses.gt_ce.weight = 1.0
        c.losses.ctkd = loss_entry("ctkd", 1.0, pairs=[["Student", "Teacher"]], base="dkd", alpha=1.0, beta=2.0,
                                   **CTKD)
    elif arg:
        raise unknown_preset("configs/ctkd.py", arg, ["cifar100", "dkd"])
    return c
