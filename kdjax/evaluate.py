"""`--mode=eval`: top-1 / top-5 of the newest checkpoint of a workdir (every sub-model) or of an export, on the
test split (PaddleClas tools/eval.py)."""

import os

import jax
import jax.numpy as jnp

from kdjax.data.pipeline import eval_batches
from kdjax.config.check import check
from kdjax.errors import CheckpointError
from kdjax.weights.export_dir import build_from_spec, is_export_dir, load_export
from kdjax.trainer import Trainer


def run(config, workdir: str, export_dir: str = None) -> dict:
    """Evaluate the newest checkpoint in `workdir` (every sub-model), or the export in `export_dir`."""
    if export_dir:
        test_src = check(config, splits=("test",), inits=False).test
        result = evaluate_export(export_dir, test_src, int(config.train.eval_batch_size))
        _print(result, f"export {export_dir}")
        return result
    with config.unlocked():
        for name, m in config.models.items():
            if m.init == "train":
                m.init = os.path.join(workdir, "pretrain", name, "export")
                if not is_export_dir(m.init):
                    raise CheckpointError(f"{workdir} has no trained {name} yet ({m.init}); train first")
    checked = check(config, splits=("test",))
    phase = Trainer(config, workdir, checked.test, checked.test, checked.info, "eval")
    restored = phase.restore_latest()
    if restored is None:
        raise CheckpointError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first, or pass "
                              f"--export_dir to evaluate an export")
    state, frozen, step = restored
    result = phase.evaluate(state, frozen)
    _print(result, f"checkpoint step {step} in {workdir}")
    return result


def evaluate_export(export_dir: str, source, batch_size: int) -> dict:
    """Top-1/top-5 of an exported model alone (no training config needed)."""
    from kdjax.models.distillation import normalize

    variables, spec = load_export(export_dir)
    model = build_from_spec(spec)

    @jax.jit
    def hits(images, labels, mask):
        logits = model.apply(variables, normalize(images, spec["mean"], spec["std"]), train=False)
        top = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
        return (jnp.sum((top[:, 0] == labels) * mask), jnp.sum(jnp.any(top == labels[:, None], -1) * mask))

    t1 = t5 = n = 0.0
    for batch in eval_batches(source, global_batch=batch_size):
        a, b = hits(batch["image"], batch["label"], batch["mask"])
        t1, t5, n = t1 + float(a), t5 + float(b), n + float(batch["mask"].sum())
    name = spec.get("model_name", "model")
    return {f"{name}/top1": t1 / n, f"{name}/top5": t5 / n, "count": int(n)}


def _print(result, what):
    print(f"Evaluation of {what} on {result['count']} test images:")
    for key in sorted(k for k in result if k.endswith("/top1")):
        name = key[:-5]
        print(f"  {name}: top-1 {100 * result[key]:.2f}%  top-5 {100 * result[name + '/top5']:.2f}%")
