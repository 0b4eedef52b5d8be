"""VID (variational information distillation, Ahn et al., CVPR 2019): ground-truth CE + VID per stage.

VID (losses.vid) maximises a variational lower bound on the mutual information between teacher and student
features: the teacher's map is modelled as a Gaussian whose mean a small regressor predicts from the student's map
and whose per-channel variance is learned (softplus). mdistiller's VID distiller:
  CE weight 1.0 [Student]                                   → losses.gt_ce
  Σ vid_loss over feats[1:], FEAT_WEIGHT 1.0, INIT_PRED_VAR 5.0, EPS 1e-5
                                                            → losses.vid on blocks[0..2] (one regressor
                                                              C_s→C_t→C_t→C_t and one variance per stage)
The offline default trains the variances (learn_variance=True, the paper and the author's code); mdistiller's
log_scales are never trained (a plain Python list, not registered parameters), so :cifar100 keeps them fixed.

  python -m kdjax.main --config=configs/vid.py --workdir=runs/vid
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/vid.py:cifar100   mdistiller VID: resnet32x4 → resnet8x4, stages[0..2], CE 1.0 + 1.0 · VID,
                                     learn_variance=False (as mdistiller trains it)
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
    c.losses.vid = loss_entry("vid", 1.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys,
                              init_pred_var=5.0, eps=1e-5, learn_variance=True)
    c.export_model = "Student"
    if arg == "cifar100":
        keys = ["stages[0]", "stages[1]", "stages[2]"]
        cifar100(c, teacher_capture=keys, student_capture=keys)
        c.losses.vid = loss_entry("vid", 1.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys,
                                  init_pred_var=5.0, eps=1e-5, learn_variance=False)
    elif arg:
        raise unknown_preset("configs/vid.py", arg, ["cifar100"])
    return c
