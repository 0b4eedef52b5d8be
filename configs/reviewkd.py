"""ReviewKD (knowledge review, Chen et al., CVPR 2021): ground-truth CE + ABF review path + hierarchical context loss.

ReviewKD (losses.reviewkd) fuses the student's features deepest first with attention-based fusion modules (ABF),
each mixing in the fused result of the stage below it, and matches every fused map to the teacher's map of the same
level with the hierarchical context loss (MSE at full size and at 4×4, 2×2, 1×1 pooled). mdistiller's ReviewKD:
  CE_WEIGHT 1.0 [Student]                                    → losses.gt_ce
  student feats[1:] + pooled_feat (post-ReLU), teacher preact_feats[1:] + pooled_feat,
  REVIEWKD_WEIGHT · min(epoch / WARMUP_EPOCHS, 1) · HCL      → losses.reviewkd: student blocks[0..2] + avg_pool,
                                                               teacher blocks_preact[0..2] + avg_pool
The offline default keeps mdistiller's default weight 1.0; its warm-up (20 of 240 epochs) is left out
(warmup_epochs=0): kdjax counts whole epochs from 1, so on a 4-epoch run any warm-up ≤ 1 epoch is none and a longer
one would damp the loss for a quarter of the run or more.

  python -m kdjax.main --config=configs/reviewkd.py --workdir=runs/reviewkd
      offline default (Fashion-MNIST, teacher trained first); measured beside every other method by the sweep
      (configs/sweep_fashion_mnist.py, docs/results/)
  --config=configs/reviewkd.py:cifar100   mdistiller ReviewKD for resnet32x4 → resnet8x4: student stages[0..2] +
                                          avg_pool, teacher stages_preact[0..2] + avg_pool, CE 1.0 + 5.0 · HCL,
                                          warm-up 20 epochs
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    s_keys = ["blocks[0]", "blocks[1]", "blocks[2]", "avg_pool"]
    t_keys = ["blocks_preact[0]", "blocks_preact[1]", "blocks_preact[2]", "avg_pool"]
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=t_keys)
    c.models.Student = model_entry("convnet_student", capture=s_keys)
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.reviewkd = loss_entry("reviewkd", 1.0, pairs=[["Student", "Teacher"]], s_keys=s_keys, t_keys=t_keys,
                                   warmup_epochs=0.0)
    c.export_model = "Student"
    if arg == "cifar100":
        s_keys = ["stages[0]", "stages[1]", "stages[2]", "avg_pool"]
        t_keys = ["stages_preact[0]", "stages_preact[1]", "stages_preact[2]", "avg_pool"]
        cifar100(c, teacher_capture=t_keys, student_capture=s_keys)
        c.losses.reviewkd = loss_entry("reviewkd", 5.0, pairs=[["Student", "Teacher"]], s_keys=s_keys,
                                       t_keys=t_keys, warmup_epochs=20.0)
    elif arg:
        raise unknown_preset("configs/reviewkd.py", arg, ["cifar100"])
    return c
