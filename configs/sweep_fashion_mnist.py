"""Accuracy benchmark: one teacher, then the same student under every method, N seeds, identical budgets.

    python -m kdjax.sweep --config=configs/sweep_fashion_mnist.py --workdir=runs/sweep

Each method's losses (types, weights, temperatures, captured features) come from its own config in
`configs/<method>.py`; the sweep swaps in its teacher, student, data and budget. `baseline` is the student
alone with ground-truth CE. Works on any dataset kdjax reads: override `config.base.data.*`
(e.g. `--config.base.data.source=tfds --config.base.data.name=cifar10 --config.base.data.tfds_data_dir=DIR`).

`multi_teacher` distils from the main teacher (its Teacher1) and `extra_teachers.Teacher2` together.

Pair chosen by measurement (see docs/results/README.md): convnet_teacher (103k params, 91-92% on Fashion-MNIST)
and convnet_student (6.9k params, ~89% alone), so the student has room below the teacher.
"""

import ml_collections

from kdjax.config.defaults import base_config, model_entry


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.base = base_config()          # data, optimizer, budget shared by every run
    c.base.data.augment = "auto"    # flip on the default Fashion-MNIST; crop, no flip (labels stay valid) on data you name
    c.base.train.epochs = 4.0
    c.base.train.eval_every_epochs = 1.0
    c.base.train.checkpoint_every_steps = 1000
    c.teacher = model_entry("convnet_teacher")
    c.teacher_epochs = 6.0
    c.student = model_entry("convnet_student")
    # frozen models a method names and that need a teacher of their own (multi-teacher KD's second teacher, as
    # configs/multi_teacher.py defines it): trained once like the main teacher; other frozen models get `teacher`
    c.extra_teachers = ml_collections.ConfigDict({"Teacher2": model_entry("ConvNet", depth=2, stem_stride=2)})
    c.methods = ("baseline", "kd", "dkd", "dist", "wsl", "dml", "rkd", "mgd", "afd", "udml",
                 "fitnet", "at", "kd_ls", "dkd_ls", "skd", "pefd", "crd", "multi_teacher",
                 "nkd", "uskd", "ctkd", "ctkd_ls", "mlkd", "mlkd_ls",
                 "reviewkd", "pkt", "sp", "nst", "vid", "ofd", "ickd", "kd_dot")
    c.method_configs_dir = "configs"
    c.seeds = (0, 1, 2)
    c.seeds_for = ml_collections.ConfigDict()  # per-method seeds where a method gets fewer runs (say so in results)
    if arg == "quick":  # a smoke run: fewer seeds, shorter budget
        c.seeds = (0,)
        c.base.train.epochs = 1.0
        c.teacher_epochs = 1.0
    elif arg:
        raise ValueError(f"configs/sweep_fashion_mnist.py has no preset {arg!r}; presets: quick")
    return c
