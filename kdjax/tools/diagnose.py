"""Loss-term mechanics of a config on real batches: who gets gradient from each term, how large it is next to CE.

    python -m kdjax.tools.diagnose --config=configs/at.py [--steps=200] [--teacher=EXPORT_DIR] [--workdir=DIR]
        [--json=out.json] [--config.data.train_limit=...]

Builds the config's Trainer, runs `--steps` real training steps (the config's optimizer, its cosine schedule over
those steps) and, at steps 0, 10%, 50% and 100% of them, on one fixed probe batch (the run's first batch, training
mode), reports for every loss term, each alone:
  - its weighted value and the gradient norm it sends to each parameter group (each trainable sub-model, each
    loss module under params["_losses"], and each frozen model, which must get none), as a ratio to the
    ground-truth CE term of the exported model;
  - the cosine between its gradient and CE's on the exported model (negative: the term pulls against CE);
and once, the captured features of every model (shape, min, share of exact zeros: a post-ReLU map has min 0 and
many zeros, a pre-activation one negative values).

A model with init='train' uses --teacher (an export dir) if given, else is trained first with CE for
`pretrain.epochs` into WORKDIR/pretrain/<name>/export (reused when it exists).

`--heldout=N` instead trains the config normally (kdjax.train.run) on all but the last N training images and
reports the exported model's top-1 on those N (a validation split: decide there, never on test); see heldout.py.
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

import copy
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from kdjax.cli import flags as cli_flags  # noqa: E402

_CONFIG = cli_flags.DEFINE_config_file("config", None, "The config to diagnose, e.g. configs/at.py.")
_STEPS = cli_flags.DEFINE_integer("steps", 100, "Training steps to run (measurements at 0, 10%, 50%, 100%).")
_TEACHER = cli_flags.DEFINE_string("teacher", None, "Export dir for the model with init='train' (skips training it).")
_WORKDIR = cli_flags.DEFINE_string("workdir", None, "Directory for a teacher trained first (default: a temp dir).")
_JSON = cli_flags.DEFINE_string("json", None, "Also write the report as JSON to this file.")
_HELDOUT = cli_flags.DEFINE_integer("heldout", 0, "> 0: train normally on all but the last N training images and "
                                                  "report top-1 on those N (validation) instead of the mechanics.")

TRAIN_FIRST = "train"


def teacher_inits(config, workdir, teacher=None):
    """Replace init='train' by an export dir: `teacher`, or one trained here with CE (reused if present)."""
    from kdjax.config.check import check
    from kdjax.train import pretrain_config
    from kdjax.trainer import Trainer
    from kdjax.weights.export_dir import is_export_dir

    config = copy.deepcopy(config)
    for name, m in config.models.items():
        if m.init != TRAIN_FIRST:
            continue
        export = teacher or os.path.join(workdir, "pretrain", name, "export")
        if not is_export_dir(export):
            pre = pretrain_config(config, name)
            checked = check(pre)
            Trainer(pre, os.path.dirname(export), checked.train, checked.test, checked.info,
                    f"train {name}").train(export)
        with config.unlocked():
            config.models[name].init = export
    return config


def _norm(tree) -> float:
    leaves = [jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(leaves)) if leaves else jnp.zeros(())


def _groups(params, frozen):
    """{group name: subtree}: each trainable model, each loss module, each frozen model ('frozen:Teacher')."""
    from kdjax.steps import LOSS_PARAMS

    out = {n: p for n, p in params.items() if n != LOSS_PARAMS}
    out.update({f"{LOSS_PARAMS}/{k}": v for k, v in params.get(LOSS_PARAMS, {}).items()})
    out.update({f"frozen:{n}": v["params"] for n, v in frozen.items()})
    return out


def make_probe(trainer, steps_per_epoch):
    """jitted (params, batch_stats, loss_state, frozen, batch, rng, step) → per-term values, group gradient norms,
    cosine with the CE term on the exported model, and the captured features' statistics."""
    from kdjax.models.distillation import normalize
    from kdjax.steps import LOSS_PARAMS, apply_losses

    model, losses = trainer.train_model, trainer.losses
    names = losses.term_names
    student = trainer.config.export_model

    def forward(params, frozen, batch_stats, loss_state, batch, rng, epoch):
        images = normalize(batch["image"], trainer.mean, trainer.std)
        model_params = {k: v for k, v in params.items() if k != LOSS_PARAMS}
        # frozen params as an argument: the gradient w.r.t. them shows whether any term reaches the teacher
        outputs, _ = model.apply(model_params, batch_stats, frozen, images, train=True, rng=rng)
        r_loss = jax.random.fold_in(rng, 1)
        _, terms, _ = apply_losses(losses, params.get(LOSS_PARAMS, {}), loss_state, outputs, batch, r_loss, epoch)
        return terms, outputs

    def probe(params, batch_stats, loss_state, frozen, batch, rng, step):
        epoch = (step // steps_per_epoch + 1).astype(jnp.float32)
        terms, outputs = forward(params, frozen, batch_stats, loss_state, batch, rng, epoch)
        report = {"terms": {}, "features": {}}
        grads = {}
        for name in names:
            g_p, g_f = jax.grad(lambda p, f: forward(p, f, batch_stats, loss_state, batch, rng, epoch)[0][name],
                                argnums=(0, 1))(params, frozen)
            grads[name] = g_p.get(student)
            report["terms"][name] = {"value": terms[name],
                                     "grad_norm": {g: _norm(t) for g, t in _groups(g_p, g_f).items()}}
        ce = ce_term(names, student)
        if ce is not None and grads[ce] is not None:
            flat_ce = jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads[ce])])
            for name in names:
                if grads[name] is None:
                    continue
                flat = jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads[name])])
                report["terms"][name]["cos_ce"] = jnp.dot(flat, flat_ce) / (
                    jnp.linalg.norm(flat) * jnp.linalg.norm(flat_ce) + 1e-20)
        for m, out in outputs.items():
            for key, x in out.items():
                if key != "logits":
                    report["features"][f"{m}/{key}"] = {"min": jnp.min(x), "max": jnp.max(x), "mean": jnp.mean(x),
                                                        "zeros": jnp.mean((x == 0).astype(jnp.float32))}
        return report

    return jax.jit(probe)


def ce_term(names, student):
    """The ground-truth CE term of the exported model ('gt_ce/Student'), or None."""
    for n in names:
        if n.split("/")[0] == "gt_ce" and n.split("/")[1].split("#")[0] == student:
            return n
    return None


def diagnose(config, *, steps: int, workdir: str, teacher: str = None) -> dict:
    """Run `steps` real training steps of `config`, probing at 0, 10%, 50%, 100%; returns the report."""
    from kdjax.config.check import check
    from kdjax.trainer import Trainer

    config = teacher_inits(config, workdir, teacher)
    checked = check(config)
    trainer = Trainer(config, os.path.join(workdir, "diagnose"), checked.train, checked.test, checked.info,
                      "diagnose")
    pipe = trainer._pipeline()
    steps = max(1, min(int(steps), pipe.total_steps))
    train_step, state, frozen = trainer.build_train_step(pipe.steps_per_epoch, steps)
    probe = make_probe(trainer, pipe.steps_per_epoch)
    put = trainer.parallel.put_batch
    host = iter(pipe.dataset)
    first = put(next(host))
    probe_rng = jax.random.PRNGKey(int(config.seed) + 7)
    rng = jax.random.PRNGKey(int(config.seed) + 1)
    at = sorted({0, max(1, steps // 10), max(1, steps // 2), steps})
    probes = {}
    batch = first
    for step in range(steps + 1):
        if step in at:
            probes[step] = jax.device_get(probe(state.params, state.batch_stats, state.loss_state, frozen, first,
                                                probe_rng, state.step))
        if step == steps:
            break
        state, _ = train_step(state, frozen, batch, rng)
        batch = put(next(host))
    outputs = jax.eval_shape(lambda p, b, f: trainer.train_model.apply(
        {k: v for k, v in p.items() if k != "_losses"}, b, f, first["image"].astype(jnp.float32), train=False,
        rng=rng)[0], state.params, state.batch_stats, frozen)
    shapes = {f"{m}/{k}": list(v.shape) for m, out in outputs.items() for k, v in out.items()}
    names = trainer.losses.term_names
    return {"steps": steps,
            "batch_size": int(config.train.batch_size), "export_model": config.export_model,
            "ce_term": ce_term(names, config.export_model), "shapes": shapes,
            "probes": {int(k): _py(v) for k, v in probes.items()}}


def _py(tree):
    return jax.tree.map(lambda x: float(np.asarray(x)), tree)


def format_report(report: dict) -> str:
    """The report as text: one block per probe step, one line per term."""
    ce = report["ce_term"]
    lines = [f"{report['steps']} steps of batch {report['batch_size']}; ratios are to {ce} on the same probe batch"]
    first = report["probes"][min(report["probes"])]
    lines.append("features (shape, min, max, share of zeros at step 0):")
    for key, st in sorted(first["features"].items()):
        lines.append(f"  {key:28s} {str(report['shapes'].get(key)):18s} min {st['min']:+.3f} max {st['max']:.3f} "
                     f"zeros {100 * st['zeros']:.0f}%")
    for step, p in sorted(report["probes"].items()):
        lines.append(f"step {step}:")
        ce_val = p["terms"][ce]["value"] if ce else None
        ce_g = p["terms"][ce]["grad_norm"].get(report["export_model"]) if ce else None
        for name, t in p["terms"].items():
            groups = ", ".join(f"{g} {v:.3g}" for g, v in t["grad_norm"].items())
            rel = ""
            if ce and name != ce:
                g = t["grad_norm"].get(report["export_model"], 0.0)
                rel = (f"  value/CE {t['value'] / ce_val:.3g}  grad/CE {g / ce_g:.3g}" if ce_val and ce_g else "")
            cos = f"  cos(CE) {t['cos_ce']:+.2f}" if "cos_ce" in t and name != ce else ""
            lines.append(f"  {name:34s} value {t['value']:.4g}{rel}{cos}\n      |grad| {groups}")
    return "\n".join(lines)


def main(argv):
    del argv
    import tempfile

    from absl import logging as absl_logging

    from kdjax.errors import ConfigError

    absl_logging.set_verbosity(absl_logging.WARNING)
    if _CONFIG.value is None:
        raise ConfigError("", "no --config given; e.g. --config=configs/at.py")
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="kdjax_diagnose_")
    if _HELDOUT.value:
        from kdjax.tools.heldout import train_and_validate

        result = train_and_validate(_CONFIG.value, workdir, _HELDOUT.value, teacher=_TEACHER.value)
        print(json.dumps(result), flush=True)
    else:
        result = diagnose(_CONFIG.value, steps=_STEPS.value, workdir=workdir, teacher=_TEACHER.value)
        print(format_report(result), flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(result, f, indent=1, default=str)


FLAG_NAMES = ("config", "steps", "teacher", "workdir", "json", "heldout")


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.tools.diagnose", module="kdjax.tools.diagnose", doc=__doc__,
                flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
