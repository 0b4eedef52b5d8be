"""`--mode=eval`: top-1 / top-5 of the newest checkpoint of a workdir (every sub-model) or of an export, on the
test split (PaddleClas tools/eval.py).

An export is evaluated with the preprocessing it records (channels, crop ratio, mean/std), on the data the config
names; data whose classes differ from the export's, or the default Fashion-MNIST for a model trained on named data
(or the reverse), is refused; other test data with the same classes is evaluated with a warning."""

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp

from kdjax.data.pipeline import eval_batches
from kdjax.config.check import check
from kdjax.errors import CheckpointError
from kdjax.data.identity import compare
from kdjax.data.preprocess import spec_preprocess
from kdjax.errors import ConfigError
from kdjax.weights.export_dir import build_from_spec, is_export_dir, load_export, load_spec
from kdjax.trainer import Trainer


def run(config, workdir: str, export_dir: str = None) -> dict:
    """Evaluate the newest checkpoint in `workdir` (every sub-model), or the export in `export_dir`."""
    if export_dir:
        spec = load_spec(export_dir)
        checked = check(config, splits=("test",), inits=False, channels=int(spec["input_size"][-1]))
        check_export_data(spec, checked.test, checked.info)
        result = evaluate_export(export_dir, checked.test, int(config.train.eval_batch_size))
        _print(result, f"export {export_dir}")
        return result
    with config.unlocked():
        for name, m in config.models.items():
            if m.init == "train":
                m.init = os.path.join(workdir, "pretrain", name, "export")
                if not is_export_dir(m.init):
                    raise CheckpointError(f"{workdir} has no trained {name} yet ({m.init}); train first")
    checked = check(config)  # the training split too: its channels and statistics, as training had them
    phase = Trainer(config, workdir, checked.test, checked.test, checked.info, "eval")
    restored = phase.restore_latest()
    if restored is None:
        raise CheckpointError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first, or pass "
                              f"--export_dir to evaluate an export")
    state, frozen, step = restored
    result = phase.evaluate(state, frozen)
    _print(result, f"checkpoint step {step} in {workdir}")
    return result


_NAME_THE_DATA = ("name the data it was trained on (data.data_dir, data.root or data.tfds_data_dir; its spec.json "
                  "\"data\" says where it was)")


def check_export_data(spec: dict, source, info):
    """Refuse data whose classes differ from the export's (or the default data for a model trained on named data,
    and the reverse); warn about other test data with the same classes; the export's input size and eval crop."""
    errors, warnings = compare(spec.get("data") or {}, info.identity, _NAME_THE_DATA)
    if errors:
        raise ConfigError("data", errors[0])
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    h, w, c = (int(v) for v in spec["input_size"])
    if tuple(info.image_shape) != (h, w, c):
        raise ConfigError("data.image_size", f"the export takes {h}×{w}×{c} images but this data gives "
                                             f"{'×'.join(map(str, info.image_shape))}; set data.image_size={h} "
                                             f"(and data.channels={c})")
    pre = spec_preprocess(spec)
    if "preprocess" in spec and getattr(source, "options", None) is not None:  # evaluate as the export recorded
        source.options = dataclasses.replace(source.options, eval_crop_ratio=float(pre["crop_ratio"]) or 1.0)


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
