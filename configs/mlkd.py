"""MLKD (Multi-Level Logit Distillation, Jin et al., CVPR 2023): instance-, batch- and class-level alignment of
student and teacher predictions over five temperatures, on a weak and a strong (RandAugment) view of each image.

Jin-Ying/Multi-Level-Logit-Distillation's `KD_ours` distiller, as its AugTrainer runs it:
  CE on both views ×0.1, kd/cc/bc ×0.9, T=4 (+ 3, 5, 2, 6)      → losses.mlkd (weight 1; it holds the CE, no gt_ce)
  teacher frozen, run on both views; student on both              → LossSpec.views=("strong",): the train step runs
                                                                     every model on batch["image_strong"] too
  strong view: crop + flip + RandAugment(2) + Cutout               → kdjax/data/strong_augment.py

  --config=configs/mlkd.py            offline default: Fashion-MNIST, small CNNs, teacher trained first
  --config=configs/mlkd.py:cifar100   the authors' CIFAR-100 recipe (configs/cifar100/ours/res32x4_res8x4.yaml):
                                      resnet32x4 → resnet8x4, 240 epochs, batch 64, SGD lr 0.025 ×0.1 at
                                      150/180/210, weight decay 5e-4 (give the teacher init and a TFDS dir)

Offline default, measured once (2026-12-02, one seed, 1 epoch instead of 4 to fit a shared 2-core machine) with a
teacher trained first by the same code (convnet_teacher, 4 epochs: 91.38%):
  python -m kdjax.main --config=configs/mlkd.py --workdir=/tmp/mlkd --config.train.epochs=1 \
      --config.models.Teacher.init=<that teacher's export>
Student 84.40% top-1 after 1 epoch (937 steps of batch 64; 8 min 41 s wall, 0.73 GB peak RSS).
Solver: the authors' (batch 64, lr 0.025), not kdjax's usual batch 128 / lr 0.1. cc and bc are sums over C×C and
N×N matrices, not means, so they grow as N²/C: about 40× CIFAR-100's at batch 128 on 10 classes. At batch 128 /
lr 0.1 (same command with --config.train.batch_size=128 --config.optim.lr=0.1 --config.train.epochs=0.5) the
student collapsed to chance: 10.00% top-1, its CE term at log(10) from step 100 on.
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.mlkd = loss_entry("mlkd", 1.0, pairs=[["Student", "Teacher"]], temperature=4.0, ce_weight=0.1,
                               kd_weight=0.9)
    c.export_model = "Student"
    # the authors' solver (batch 64, lr 0.025): at batch 128 / lr 0.1 the student collapses (see the docstring)
    c.train.batch_size = 64
    c.optim.lr = 0.025
    if arg == "cifar100":
        cifar100(c)
        c.optim.lr = 0.025
    elif arg:
        raise unknown_preset("configs/mlkd.py", arg, ["cifar100"])
    return c
