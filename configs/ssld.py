"""SSLD (Cui et al., 2021): the DML loss against a frozen teacher, no ground-truth label, unlabeled data welcome.

PaddleClas' PPLCNet_x2_5_ssld.yaml (ppcls/configs/ImageNet/Distillation/), line by line:
  Teacher ResNet50_vd frozen, pretrained (use_ssld) → models.Teacher (frozen, init)
  Student PPLCNet_x2_5                              → models.Student
  DistillationDMLLoss weight 1.0, pairs [Student, Teacher] → losses.ssld (DML semantics, teacher frozen)
  infer_model_name: Student                         → export_model

  --config=configs/ssld.py           offline default (Fashion-MNIST, teacher trained first)
  --config=configs/ssld.py:imagenet  ResNet50_vd → PPLCNet_x2_5 (give the teacher init; add unlabeled images
                                     with the data options of the SSLD section in the README)

Run: `python -m kdjax.main --config=configs/ssld.py --workdir=runs/ssld` (offline default). Not part of the
benchmark (it needs unlabeled data to show its point); its wall time and result have not been measured yet
(`python benchmarks/config_defaults.py --configs=ssld` measures both).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import imagenet, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train")
    c.models.Student = model_entry("convnet_student")
    c.losses.ssld = loss_entry("ssld", 1.0, pairs=[["Student", "Teacher"]])
    c.export_model = "Student"
    if arg == "imagenet":
        imagenet(c, teacher="ResNet50_vd", student="PPLCNet_x2_5", epochs=360)
    elif arg:
        raise unknown_preset("configs/ssld.py", arg, ["imagenet"])
    return c
