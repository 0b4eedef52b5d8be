"""AFD (Ji et al., AAAI 2021): attention over all teacher/student feature pairs, plus KD and ground-truth CE.

PaddleClas' resnet34_distill_resnet18_afd.yaml (ppcls/configs/ImageNet/Distillation/), line by line:
  Teacher AttentionModel = ResNet34 (frozen, pretrained, return_patterns blocks[0..15]) + LinearTransformTeacher
  Student AttentionModel = ResNet18 (return_patterns blocks[0..7]) + LinearTransformStudent
      → kdjax keeps the LinearTransform heads and attention parameters on the loss side (losses.afd), trained
        with the student; the backbones capture the same blocks
  DistillationGTCELoss weight 1.0 [Student], key logits            → losses.gt_ce
  DistillationKLDivLoss weight 0.9, T=4, key logits                → losses.kd
  AFDLoss weight 50.0, qk_dim 128                                   → losses.afd

  --config=configs/afd.py            offline default: all three stages of both small CNNs
  --config=configs/afd.py:imagenet   PaddleClas' ResNet34 → ResNet18 recipe

Run: `python -m kdjax.main --config=configs/afd.py --workdir=runs/afd` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.61 ± 0.27% top-1; the distillation phase took a median
173 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    keys = ["blocks[0]", "blocks[1]", "blocks[2]"]
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=keys)
    c.models.Student = model_entry("convnet_student", capture=keys)
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"], key="logits")
    c.losses.kd = loss_entry("kd", 0.9, pairs=[["Student", "Teacher"]], temperature=4.0, key="logits")
    c.losses.afd = loss_entry("afd", 50.0, pairs=[["Student", "Teacher"]], s_keys=keys, t_keys=keys, qk_dim=128)
    c.export_model = "Student"
    if arg == "imagenet":
        t_keys = [f"blocks[{i}]" for i in range(16)]
        s_keys = [f"blocks[{i}]" for i in range(8)]
        imagenet(c, teacher_capture=t_keys, student_capture=s_keys)
        c.losses.afd = loss_entry("afd", 50.0, pairs=[["Student", "Teacher"]], s_keys=s_keys, t_keys=t_keys,
                                  qk_dim=128)
    elif arg:
        raise unknown_preset("configs/afd.py", arg, ["imagenet"])
    return c
