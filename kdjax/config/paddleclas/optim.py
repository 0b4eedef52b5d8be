"""`Optimizer` → `config.optim`: Momentum / SGD / AdamW, `regularizer` (L2) or `weight_decay`, and the `lr`
schedulers kdjax can follow step for step (Cosine, Piecewise, Step, MultiStepDecay, ConstLR, with linear warm-up).

PaddleClas semantics reproduced (ppcls/optimizer at d178931):
* L2 `coeff` (or a float `weight_decay`) is added to the gradient before momentum: kdjax's SGD weight decay.
  AdamW's `weight_decay` is decoupled: kdjax's adamw.
* Warm-up is paddle's LinearWarmup from `warmup_start_lr` (0) to the base rate over round(warmup_epoch × steps per
  epoch) steps; the wrapped schedule then starts from its own step 0, so Piecewise / Step / MultiStepDecay
  boundaries fall `warmup_epoch` epochs later than written. kdjax counts milestones from step 0 of the run, so they
  are shifted by `warmup_epoch` here.
* Cosine decays to `eta_min` (must be 0 here) over (epochs − warmup_epoch) epochs, per step.
* Piecewise with `learning_rate` set ignores `decay_epochs` / `values` and decays ×0.1 every 30 epochs.
"""

import math

from kdjax.config.paddleclas.context import Ctx, get, join

_SCHEDULE_FIELDS = ("name", "learning_rate", "warmup_epoch", "warmup_start_lr", "last_epoch", "by_epoch",
                    "epochs", "step_each_epoch", "verbose")


def _geometric(ctx: Ctx, values, path: str) -> float:
    """The constant ratio of a list of learning rates (kdjax's step schedule multiplies by one decay_rate)."""
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, (int, float)) and v > 0
                                                                  for v in values):
        ctx.refuse(path, f"must list two or more positive learning rates, got {values!r}")
    ratios = [values[i + 1] / values[i] for i in range(len(values) - 1)]
    if any(not math.isclose(r, ratios[0], rel_tol=1e-6) for r in ratios):
        ctx.refuse(path, f"{values} do not decay by one constant factor; kdjax's step schedule multiplies the rate "
                         f"by optim.decay_rate at each milestone")
    return float(ratios[0])


def _schedule(ctx: Ctx, lr, epochs: float) -> dict:
    path = "Optimizer.lr"
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return dict(lr=float(lr), schedule="constant", warmup_epochs=0.0, milestones=(), decay_rate=0.1)
    lr = ctx.mapping(lr, path)
    if not lr:
        ctx.refuse(path, "missing: the learning rate (a number, or {name: Cosine, learning_rate: ...})")
    name = lr.get("name")
    if get(lr, "last_epoch", -1) != -1:
        ctx.refuse(join(path, "last_epoch"), "kdjax resumes schedules from its checkpoints; leave it -1")
    if get(lr, "warmup_start_lr", 0.0) != 0.0:
        ctx.refuse(join(path, "warmup_start_lr"), "kdjax's warm-up starts from 0")
    warmup = ctx.number(get(lr, "warmup_epoch", 0), join(path, "warmup_epoch"))
    if warmup < 0:
        ctx.refuse(join(path, "warmup_epoch"), "must be >= 0")
    if warmup >= epochs and warmup > 0:
        ctx.note(join(path, "warmup_epoch"), f"{warmup:g} >= Global.epochs: PaddleClas shortens it to {epochs:g}")
        warmup = epochs
    if get(lr, "by_epoch", False):
        ctx.refuse(join(path, "by_epoch"), "kdjax updates the learning rate every step; by_epoch schedules are not "
                                           "translated")
    for f in ("epochs", "step_each_epoch"):
        if lr.get(f) is not None:
            ctx.note(join(path, f), "ignored: PaddleClas overwrites it with Global.epochs / the loader's length")
    out = dict(warmup_epochs=float(warmup), milestones=(), decay_rate=0.1)
    if name is None:
        return dict(out, lr=ctx.number(lr.get("learning_rate"), join(path, "learning_rate"), positive=True),
                    schedule="constant")
    if name == "Cosine":
        ctx.only(lr, path, _SCHEDULE_FIELDS + ("eta_min",))
        if get(lr, "eta_min", 0.0) != 0.0:
            ctx.refuse(join(path, "eta_min"), "kdjax's cosine schedule decays to 0")
        return dict(out, lr=ctx.number(lr.get("learning_rate"), join(path, "learning_rate"), positive=True),
                    schedule="cosine")
    if name in ("ConstLR", "Constant"):
        ctx.only(lr, path, _SCHEDULE_FIELDS)
        return dict(out, lr=ctx.number(lr.get("learning_rate"), join(path, "learning_rate"), positive=True),
                    schedule="constant")
    if name == "Piecewise":
        ctx.only(lr, path, _SCHEDULE_FIELDS + ("decay_epochs", "values"))
        base = get(lr, "learning_rate")
        if base:  # PaddleClas: ×0.1 every 30 epochs, decay_epochs / values ignored
            base = ctx.number(base, join(path, "learning_rate"), positive=True)
            if lr.get("decay_epochs") is not None or lr.get("values") is not None:
                ctx.note(join(path, "learning_rate"), "set, so PaddleClas ignores decay_epochs / values and decays "
                                                      "the rate ×0.1 every 30 epochs")
            decay = [e for e in range(30, int(epochs), 30)] if epochs > 30 else []
            rate = 0.1
        else:
            decay = lr.get("decay_epochs")
            if not isinstance(decay, list) or not decay:
                ctx.refuse(join(path, "decay_epochs"), f"must list epochs, got {decay!r}")
            values = lr.get("values")
            rate = _geometric(ctx, values, join(path, "values"))
            if len(values) != len(decay) + 1:
                ctx.refuse(join(path, "values"), f"must hold one rate more than decay_epochs ({len(decay) + 1})")
            base = float(values[0])
        return dict(out, lr=base, schedule="step" if decay else "constant",
                    milestones=tuple(float(e) + warmup for e in decay), decay_rate=rate)
    if name in ("Step", "MultiStepDecay"):
        extra = ("step_size", "gamma") if name == "Step" else ("milestones", "gamma")
        ctx.only(lr, path, _SCHEDULE_FIELDS + extra)
        base = ctx.number(lr.get("learning_rate"), join(path, "learning_rate"), positive=True)
        gamma = ctx.number(get(lr, "gamma", 0.1), join(path, "gamma"), positive=True)
        if gamma > 1:
            ctx.refuse(join(path, "gamma"), "kdjax's step schedule decays (decay_rate <= 1)")
        if name == "Step":
            size = ctx.number(lr.get("step_size"), join(path, "step_size"), positive=True)
            decay = []
            e = size
            while e < epochs - warmup:  # StepDecay decays every step_size epochs of its own (post-warm-up) steps
                decay.append(e)
                e += size
        else:
            decay = lr.get("milestones")
            if not isinstance(decay, list) or not decay:
                ctx.refuse(join(path, "milestones"), f"must list epochs, got {decay!r}")
        return dict(out, lr=base, schedule="step" if decay else "constant",
                    milestones=tuple(float(e) + warmup for e in decay), decay_rate=gamma)
    ctx.refuse(join(path, "name"), f"no kdjax translation for the {name!r} schedule; translated: Cosine, Piecewise, "
                                   f"Step, MultiStepDecay, ConstLR (or a plain number)")


def translate_optimizer(ctx: Ctx, opt, epochs: float) -> dict:
    """config.optim fields for `Optimizer`."""
    path = "Optimizer"
    opt = ctx.mapping(opt, path)
    if not opt:
        ctx.refuse(path, "missing: e.g. {name: Momentum, momentum: 0.9, lr: {name: Cosine, learning_rate: 0.1}}")
    name = opt.get("name")
    common = ("name", "lr", "regularizer", "weight_decay", "multi_precision", "no_weight_decay_name",
              "one_dim_param_no_weight_decay", "clip_norm")
    if name == "Momentum":
        ctx.only(opt, path, common + ("momentum", "use_nesterov"))
        momentum = ctx.number(opt.get("momentum"), join(path, "momentum"))
        out = dict(name="sgd", momentum=momentum, nesterov=bool(get(opt, "use_nesterov", False)))
    elif name == "SGD":
        ctx.only(opt, path, common)
        out = dict(name="sgd", momentum=0.0, nesterov=False)
    elif name == "AdamW":
        ctx.only(opt, path, common + ("beta1", "beta2", "epsilon", "amsgrad"))
        for f, default in (("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-8), ("amsgrad", False)):
            if get(opt, f, default) != default:
                ctx.refuse(join(path, f), f"kdjax's adamw uses {f}={default}")
        out = dict(name="adamw", momentum=0.9, nesterov=False)
    else:
        ctx.refuse(join(path, "name"), f"no kdjax translation for {name!r}; translated: Momentum, SGD, AdamW")
    if get(opt, "no_weight_decay_name"):
        ctx.refuse(join(path, "no_weight_decay_name"), "kdjax applies weight decay to every parameter")
    if get(opt, "one_dim_param_no_weight_decay", False):
        ctx.refuse(join(path, "one_dim_param_no_weight_decay"), "kdjax applies weight decay to every parameter")
    if get(opt, "clip_norm") is not None:
        ctx.refuse(join(path, "clip_norm"), "PaddleClas clips each gradient tensor by its own norm; kdjax's "
                                            "optim.grad_clip_norm clips the global norm")
    if get(opt, "multi_precision") is not None:
        ctx.note(join(path, "multi_precision"), "kdjax keeps float32 master weights always")
    wd = 0.0
    reg = get(opt, "regularizer")
    if reg is not None:
        reg = ctx.mapping(reg, join(path, "regularizer"))
        ctx.only(reg, join(path, "regularizer"), ("name", "coeff"))
        if reg.get("name") != "L2":
            ctx.refuse(join(path, "regularizer.name"), f"kdjax translates L2 regularisation only, got "
                                                       f"{reg.get('name')!r}")
        if name == "AdamW":
            ctx.refuse(join(path, "regularizer"), "an L2 regularizer on AdamW is coupled weight decay; kdjax's adamw "
                                                  "decouples it (use weight_decay)")
        wd = ctx.number(reg.get("coeff", 0.0), join(path, "regularizer.coeff"))
        if get(opt, "weight_decay") is not None:
            ctx.note(join(path, "weight_decay"), "ignored because regularizer is set (as PaddleClas does)")
    elif get(opt, "weight_decay") is not None:
        wd = ctx.number(opt["weight_decay"], join(path, "weight_decay"))
    elif name == "AdamW":
        ctx.refuse(join(path, "weight_decay"), "missing: PaddleClas hands paddle's AdamW weight_decay=None; give the "
                                               "coefficient")
    if wd < 0:
        ctx.refuse(join(path, "regularizer.coeff" if reg else "weight_decay"), "must be >= 0")
    if wd and name != "AdamW":
        ctx.note(join(path, "regularizer" if reg else "weight_decay"),
                 "applied to every parameter; PaddleClas exempts parameters whose layer sets its own regularizer "
                 "(e.g. PPLCNet's BatchNorm, L2Decay(0))")
    out.update(weight_decay=wd, grad_clip_norm=0.0)
    out.update(_schedule(ctx, opt.get("lr"), epochs))
    return out
