"""The paper recipes behind `--config=configs/<method>.py:<preset>`; each needs data and a teacher the user supplies.

`imagenet`: PaddleClas' ImageNet-1k distillation recipe of the seed document (ResNet34 → ResNet18 unless the
method says otherwise), 224×224, read from a TFDS `imagenet2012` directory or a PaddleClas list-file folder.
`cifar100`: the mdistiller CIFAR-100 recipe (resnet32x4 → resnet8x4, 240 epochs, batch 64, lr 0.05 ×0.1 at
150/180/210, weight decay 5e-4).
"""

from kdjax.config.defaults import model_entry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def imagenet(c, teacher="ResNet34", student="ResNet18", teacher_capture=(), student_capture=(), epochs=100):
    """ImageNet-1k: frozen pretrained teacher (init must be given), student from scratch, SGD 0.1 cosine."""
    with c.unlocked():
        c.data.name = "imagenet2012"
        c.data.source = "auto"
        c.data.train_split = "train"
        c.data.test_split = "validation"
        c.data.mean, c.data.std = IMAGENET_MEAN, IMAGENET_STD
        c.data.augment = "imagenet_train"
        c.data.image_size = 224
        c.data.num_classes = 1000
        c.models.Teacher = model_entry(teacher, frozen=True, init="", capture=teacher_capture)
        c.models.Student = model_entry(student, capture=student_capture)
        c.train.batch_size = 256
        c.train.epochs = float(epochs)
        c.train.eval_batch_size = 250
        c.train.checkpoint_every_steps = 2000
        c.optim.update(dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="cosine",
                            warmup_epochs=5.0))
    return c


def cifar100(c, teacher="resnet32x4", student="resnet8x4", teacher_capture=(), student_capture=()):
    """CIFAR-100 (TFDS `cifar100`): frozen teacher (init must be given), mdistiller's 240-epoch step schedule."""
    with c.unlocked():
        c.data.name = "cifar100"
        c.data.source = "tfds"
        c.data.train_split = "train"
        c.data.test_split = "test"
        c.data.mean, c.data.std = CIFAR100_MEAN, CIFAR100_STD
        c.data.augment = "cifar_train"
        c.data.num_classes = 100
        c.models.Teacher = model_entry(teacher, frozen=True, init="", capture=teacher_capture)
        c.models.Student = model_entry(student, capture=student_capture)
        c.train.batch_size = 64
        c.train.epochs = 240.0
        c.train.checkpoint_every_steps = 2000
        c.optim.update(dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="step",
                            milestones=(150, 180, 210), decay_rate=0.1, warmup_epochs=0.0))
    return c


def unknown_preset(path: str, arg: str, presets):
    return ValueError(f"{path} has no preset {arg!r}; presets: {', '.join(presets)} (or none for the offline default)")
