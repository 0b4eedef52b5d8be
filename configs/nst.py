"""NST (neuron selectivity transfer, Huang & Wang, 2017): ground-truth CE + polynomial-kernel MMD per stage.

NST (losses.nst) matches the distributions of the student's and the teacher's channel activation patterns (each
channel's H·W map, L2-normalised) with the squared MMD of a degree-2 polynomial kernel. mdistiller's NST distiller:
  CE weight 1.0 [Student]                                        → losses.gt_ce
  nst_loss(feats_s[1:], feats_t[1:]), FEAT_WEIGHT 50             → losses.nst on every stage output: blocks[0..2]
                                                                   (14×14, 7×7, 3×3; channel counts may differ)

  python -m kdjax.main --config=configs/nst.py --workdir=runs/nst
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/nst.py:cifar100   mdistiller NST: resnet32x4 → resnet8x4, stages[0..2], CE 1.0 + 50 · NST
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    keys = ["blocks[0]", "blocks[1]", "blocks[2]"]
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=keys)
    c.models.Student = model_entry("convnet_student", capture=keys)
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.nst = loss_entry("nst", 50.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys)
    c.export_model = "Student"
    if arg == "cifar100":
        keys = ["stages[0]", "stages[1]", "stages[2]"]
        cifar100(c, teacher_capture=keys, student_capture=keys)
        c.losses.nst = loss_entry("nst", 50.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys)
    elif arg:
        raise unknown_preset("configs/nst.py", arg, ["cifar100"])
    return c
