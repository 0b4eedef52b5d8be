"""CRD (contrastive representation distillation, Tian et al., ICLR 2020): ground-truth CE + NCE against memory banks.

Embedding heads (Linear + L2-normalise to feat_dim 128) on both models' penultimate features; each example is
contrasted with K negatives drawn from memory banks holding an embedding of every training example (one bank per
side, momentum 0.5, temperature 0.07). The heads train with the student and are never exported; the banks are
non-gradient loss state in the training state (checkpointed, so a resumed run continues with them). Training
batches carry each example's dataset index for this ("index"). RepDistiller / mdistiller's recipe:
  CE weight 1.0 [Student]                                                   → losses.gt_ce
  CRD weight 0.8, feat_dim 128, nce_t 0.07, nce_m 0.5, on avg_pool          → losses.crd

  --config=configs/crd.py            offline default: K = 1024 negatives per example. Scoring gathers B·(K+1)
                                     memory rows per side, so a step costs time linear in K: on 2 CPU cores
                                     K = 4096 made a step ~4× slower than K = 1024 (~10× a KD step);
                                     --config.losses.crd.params.nce_k=16384 gives the paper's K
  --config=configs/crd.py:cifar100   mdistiller CRD: resnet32x4 → resnet8x4, K = 16384

Run: `python -m kdjax.main --config=configs/crd.py --workdir=runs/crd` (offline default: Fashion-MNIST, the
teacher trained first, then 4 epochs of distillation). Expected result: the untuned benchmark of 2026-11-28
(docs/results/untuned_2026-11-28: this config's losses on the same student and budget, 3 seeds, its teacher
trained 6 epochs) measured the student at 88.10 ± 0.25% top-1; the distillation phase took a median
229 s per run on the project's 2-core CPU machine (shared then), plus 83 s for the teacher phase
(the default run's, measured on the quiet machine).
"""

from kdjax.config.defaults import base_config, loss_entry, model_entry
from kdjax.config.presets import cifar100, unknown_preset


def get_config(arg=None):
    c = base_config()
    c.data.augment = "auto"  # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.models.Teacher = model_entry("convnet_teacher", frozen=True, init="train", capture=["avg_pool"])
    c.models.Student = model_entry("convnet_student", capture=["avg_pool"])
    c.losses.gt_ce = loss_entry("gt_ce", 1.0, models=["Student"])
    c.losses.crd = loss_entry("crd", 0.8, pairs=[["Student", "Teacher"]], s_key="avg_pool", t_key="avg_pool",
                              feat_dim=128, nce_k=1024, nce_t=0.07, nce_m=0.5)
    c.export_model = "Student"
    if arg == "cifar100":
        cifar100(c, teacher_capture=["avg_pool"], student_capture=["avg_pool"])
        c.losses.crd.params.nce_k = 16384
    elif arg:
        raise unknown_preset("configs/crd.py", arg, ["cifar100"])
    return c
