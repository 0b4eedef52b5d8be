"""PKT (probabilistic knowledge transfer, Passalis & Tefas, ECCV 2018): ground-truth CE + PKT on pooled features.

PKT (losses.pkt) turns each model's batch of pooled features into cosine-similarity conditional probabilities and
matches the student's to the teacher's (KL, averaged over the N² entries). mdistiller's PKT distiller:
  CE weight 1.0 [Student]                                   → losses.gt_ce
  pkt_loss(pooled_feat_s, pooled_feat_t), FEAT_WEIGHT 30000 → losses.pkt on avg_pool (32 vs 128 channels here)
The pooled features are the layer mdistiller uses; the weight is mdistiller's (the loss is a mean over N² entries,
so it is small: ~1e-4 at the start).

  python -m kdjax.main --config=configs/pkt.py --workdir=runs/pkt
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/pkt.py:cifar100   mdistiller PKT: resnet32x4 → resnet8x4, avg_pool, CE 1.0 + 30000 · PKT
                                     (give --config.models.Teacher.init and a TFDS cifar100 directory)
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=["avg_pool"])
    c.models.Student = model_entry("convnet_student", capture=["avg_pool"])
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.pkt = loss_entry("pkt", 30000.0, pairs=[["Student", "Teacher"]], key="avg_pool", eps=1e-7)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c, teacher_capture=["avg_pool"], student_capture=["avg_pool"])
    elif arg:
        raise unknown_preset("configs/pkt.py", arg, ["cifar100"])
    return c
