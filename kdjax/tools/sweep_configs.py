"""What each run of the sweep trains: a method's own losses (configs/<method>.py) on the sweep's teacher, student,
data and budget; the baseline rows; the teachers' pre-training configs; the text the report gives each method.

A method whose student cannot be swapped for the sweep's (DeiT's ViT with its distillation token) is listed in
`sweep.own_student`: it keeps its config's student and recipe and is paired with its own baseline row.
"""

import copy
import importlib.util
import os

import ml_collections

from kdjax.config.defaults import loss_entry
from kdjax.tools import sweep_grid


def method_config_path(directory: str, method: str) -> str:
    from kdjax.cli.config_path import resolve

    return resolve(os.path.join(directory, f"{method}.py"))  # configs/ of the installed package when not here


def load_method_config(directory: str, method: str):
    path = method_config_path(directory, method)
    if not os.path.isfile(path):
        from kdjax.errors import ConfigError

        raise ConfigError("methods", f"no config {path} for method {method!r}")
    spec = importlib.util.spec_from_file_location(f"kdjax_method_{method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def extra_teachers(sweep) -> dict:
    return sweep.get("extra_teachers") or {}


def teacher_name(sweep, model_name: str) -> str:
    """Which sweep teacher frozen model `model_name` gets: itself when `extra_teachers` names it, else "" (main)."""
    return model_name if model_name in extra_teachers(sweep) else ""


def teacher_entry(sweep, name: str = ""):
    """The sweep's model for teacher `name`: `extra_teachers[name]`, or `teacher` for ""."""
    return extra_teachers(sweep)[name] if name else sweep.teacher


def teacher_config(sweep, name: str = ""):
    """Pre-training config of the main teacher, or of extra teacher `name`."""
    c = copy.deepcopy(sweep.base)
    with c.unlocked():
        teacher = copy.deepcopy(teacher_entry(sweep, name))
        teacher.frozen, teacher.init, teacher.capture = False, "", ()
        c.models = ml_collections.ConfigDict({"Teacher": teacher})
        c.losses = ml_collections.ConfigDict({"gt_ce": loss_entry("gt_ce", 1.0, models=["Teacher"])})
        c.export_model = "Teacher"
        c.train.epochs = sweep.teacher_epochs
    return c


def run_config(sweep, method: str, seed: int, teacher_export, settings=None, final_test: bool = True):
    """method_config with a trial's `settings` applied; `final_test=False` (tuning trials): validation only."""
    c = sweep_grid.apply(method_config(sweep, method, seed, teacher_export), dict(settings or {}), method)
    with c.unlocked():
        c.train.final_test = bool(final_test)
    return c


def method_config(sweep, method: str, seed: int, teacher_export):
    """The method's own losses and captures (configs/<method>.py) on the sweep's models, data and budget.

    `teacher_export`: the main teacher's export dir, or {frozen model name or "": export dir} when a method has
    several frozen models (multi-teacher KD): a name in `sweep.extra_teachers` gets that teacher, others the
    main one. A method in `sweep.own_student` keeps its config's student and recipe (see `own_student`)."""
    exports = teacher_export if isinstance(teacher_export, dict) else {"": teacher_export}
    c = copy.deepcopy(sweep.base)
    own = own_student(sweep, method)
    with c.unlocked():
        c.seed = int(seed)
        if method == "baseline":
            _alone(c, sweep.student)
            return c
        mc = load_method_config(sweep.method_configs_dir, own[0] if own else method)
        if own:  # the optimizer, batch and epochs of the method's config: its student was made for them
            c.optim = copy.deepcopy(mc.optim)
            c.train.batch_size, c.train.epochs = mc.train.batch_size, mc.train.epochs
        if own and method != own[0]:  # the method's paired baseline: its student alone
            student = copy.deepcopy(mc.models[mc.export_model])
            student.kwargs.update(dict(own[1].get("baseline_kwargs") or {}))
            student.capture, student.init = (), ""
            _alone(c, student)
            return c
        c.models = ml_collections.ConfigDict()
        for name, m in mc.models.items():
            source = teacher_entry(sweep, teacher_name(sweep, name)) if m.frozen else (m if own else sweep.student)
            entry = copy.deepcopy(m)
            entry.arch, entry.kwargs = source.arch, copy.deepcopy(source.kwargs)
            if m.frozen:
                entry.init = exports.get(teacher_name(sweep, name), "")
            c.models[name] = entry
        c.losses = copy.deepcopy(mc.losses)
        c.export_model = mc.export_model
        if not own:
            _method_optimizer(c, mc)
    return c


def _alone(c, student):
    """`c` trains `student` alone on the labels (a baseline row)."""
    c.models = ml_collections.ConfigDict({"Student": copy.deepcopy(student)})
    c.losses = ml_collections.ConfigDict({"gt_ce": loss_entry("gt_ce", 1.0, models=["Student"])})
    c.export_model = "Student"


def own_student(sweep, method: str):
    """(method config name, entry) when `method` is in `sweep.own_student` or is the baseline paired with one there;
    else None. Such a method keeps its config's student and recipe (DeiT's ViT with its distillation token cannot
    be swapped for the sweep's CNN student) and is paired with its own baseline row: that student alone on the
    labels (with `baseline_kwargs`, e.g. distilled=False), same recipe and seeds."""
    for name, entry in (sweep.get("own_student") or {}).items():
        if method in (name, entry.baseline):
            return name, entry
    return None


def paired_with(sweep, method: str):
    """The baseline row `method`'s gains are paired against; None for a baseline row itself."""
    if is_baseline(sweep, method):
        return None
    own = own_student(sweep, method)
    return own[1].baseline if own else "baseline"


def is_baseline(sweep, method: str) -> bool:
    own = own_student(sweep, method)
    return method == "baseline" or bool(own and method == own[1].baseline)


def _method_optimizer(c, mc):
    """A method that is an optimizer choice (DOT: optim.name='dot') keeps its optimizer and the fields that choice
    sets (delta, momentum, nesterov); learning rate, schedule, weight decay and budget stay the sweep's. A method
    whose config clips the gradient norm (MLKD + LS: its kd_weight-9 terms blow the student's logits up without it)
    keeps its clip where the sweep sets none; dropping it would run another method than its config."""
    name = mc.get("optim", {}).get("name", c.optim.name)
    if name != c.optim.name:
        for field in ("name", "delta", "momentum", "nesterov"):
            if field in mc.optim:
                c.optim[field] = mc.optim[field]
    clip = float(mc.get("optim", {}).get("grad_clip_norm", 0.0) or 0.0)
    if clip and not float(c.optim.get("grad_clip_norm", 0.0) or 0.0):
        c.optim.grad_clip_norm = clip


def teachers_needed(sweep, method: str):
    """"" (the main teacher) plus each extra teacher the method's frozen models name; none for a baseline row."""
    if is_baseline(sweep, method):
        return ()
    frozen = [n for n, m in load_method_config(sweep.method_configs_dir, method).models.items() if m.frozen]
    return ("",) + tuple(sorted(n for n in frozen if teacher_name(sweep, n)))


def losses_text(sweep, method: str, cfg=None) -> str:
    """The method's losses as the report lists them, with an optimizer choice (DOT) or gradient clip it keeps
    (`cfg`: its method_config, when the caller has it already); a method on its own student (`own_student`) has
    its whole recipe in `recipe_text` instead."""
    cfg = cfg if cfg is not None else method_config(sweep, method, 0, "")
    text = "; ".join(_describe(e) for e in cfg.losses.values())
    if own_student(sweep, method):
        return text
    if cfg.optim.name != sweep.base.optim.name:  # an optimizer method (DOT)
        text += f"; optim {cfg.optim.name}(delta={cfg.optim.get('delta')})"
    if cfg.optim.get("grad_clip_norm") and not sweep.base.optim.get("grad_clip_norm"):
        text += f"; gradient norm clipped at {cfg.optim.grad_clip_norm:g}"
    return text


def recipe_text(sweep, method: str, cfg=None) -> str:
    """"" for a method on the sweep's student and recipe; else its student and recipe, as the report says them."""
    if not own_student(sweep, method):
        return ""
    cfg = cfg if cfg is not None else method_config(sweep, method, 0, "")
    m, o = cfg.models[cfg.export_model], cfg.optim
    kwargs = ", ".join(f"{k}={v}" for k, v in sorted(m.kwargs.items()))
    return (f"student `{m.arch}({kwargs})`, {o.name} lr {o.lr:g} (unless tuned), weight decay {o.weight_decay:g} "
            f"(unless tuned), {o.schedule} schedule with {o.get('warmup_epochs', 0):g} warm-up epochs, batch "
            f"{cfg.train.batch_size}, {cfg.train.epochs:g} epochs")


def _describe(entry) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(dict(entry.get("params", {})).items()) if v is not None)
    return f"{entry.weight:g}×{entry.type}" + (f"({params})" if params else "")
