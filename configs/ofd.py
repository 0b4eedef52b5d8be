"""OFD (overhaul of feature distillation, Heo et al., ICCV 2019): ground-truth CE + partial L2 on pre-ReLU features.

OFD (losses.ofd) sends the student's pre-ReLU map through a connector (1×1 conv + BatchNorm) and compares it with the
teacher's pre-ReLU map by a partial L2 that ignores the student where both are below the teacher's margin, a
per-channel value from the teacher's BatchNorm before that ReLU (read from the frozen teacher when training starts).
mdistiller's OFD distiller:
  CE weight 1.0 [Student]                                        → losses.gt_ce
  ofd_loss(preact_feats_s[1:], preact_feats_t[1:]), FEAT_WEIGHT 0.001, CONNECTOR.KERNEL_SIZE 1
                                                                 → losses.ofd on blocks_preact[0..2] of both models,
                                                                   margins from the teacher's stage{i}_conv0 BNs
  OFD.train() puts the teacher in training mode too               → models.Teacher train_mode=True (BatchNorm batch
                                                                   statistics, as the authors' code also runs it)

  python -m kdjax.main --config=configs/ofd.py --workdir=runs/ofd
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/ofd.py:cifar100   mdistiller OFD: resnet32x4 → resnet8x4, stages_preact[0..2], margins from
                                     layer{1,2,3}_4/bn2, CE 1.0 + 0.001 · OFD, teacher in training mode
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    keys = ["blocks_preact[0]", "blocks_preact[1]", "blocks_preact[2]"]
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=keys, train_mode=True)
    c.models.Student = model_entry("convnet_student", capture=keys)
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.ofd = loss_entry("ofd", 0.001, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys,
                              teacher_bns=[f"stage{i}_conv0/BatchNorm_0" for i in range(3)], kernel_size=1)
    c.export_model = "Student"
    if arg == "cifar100":
        keys = ["stages_preact[0]", "stages_preact[1]", "stages_preact[2]"]
        cifar100(c, teacher_capture=keys, student_capture=keys)
        c.models.Teacher.train_mode = True
        # resnet32x4: 5 blocks per stage; the last block's bn2 (mdistiller's get_bn_before_relu)
        c.losses.ofd = loss_entry("ofd", 0.001, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys,
                                  teacher_bns=[f"layer{i}_4/bn2" for i in (1, 2, 3)], kernel_size=1)
    elif arg:
        raise unknown_preset("configs/ofd.py", arg, ["cifar100"])
    return c
