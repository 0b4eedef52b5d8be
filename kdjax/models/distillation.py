"""DistillationModel semantics (PaddleClas): named sub-models, frozen ones, features by name.

One object owns the sub-models a config names and runs them all on one batch, returning
`{model_name: {"logits": ..., <captured feature>: ...}}` for the losses. Frozen models run in inference mode
(BatchNorm running statistics), receive no gradient, and are not part of the training state.

Features are what a model records by name (`features.record`); a user's own module (`arch="file.py:Class"`,
models/user_module.py) can also have any submodule's output captured by its module path (`backbone/stage3`), through
Flax's `capture_intermediates` restricted to the paths its `capture` names.
"""

import dataclasses
import zlib
from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from kdjax.errors import ConfigError
from kdjax.models import get_model, user_module
from kdjax.models.features import COLLECTION, collect
from kdjax.models.layers import KERNELS_AUTO, using_kernels
from kdjax.models.registry import ModelInputError, with_num_classes


@dataclasses.dataclass(frozen=True)
class SubModel:
    name: str
    arch: str
    kwargs: dict
    module: object
    frozen: bool
    init: str
    capture: Tuple[str, ...]
    train_mode: bool = False  # frozen, but run in training mode (BatchNorm batch statistics): mdistiller's OFD teacher

    @property
    def by_path(self) -> bool:
        """A user module: capture names may be module paths (capture_intermediates)."""
        return isinstance(self.module, user_module.UserModel)


def build_submodels(models_cfg, num_classes: int) -> Dict[str, SubModel]:
    subs = {}
    for name, m in models_cfg.items():
        kwargs = with_num_classes(m.arch, dict(m.get("kwargs", {}) or {}), num_classes)
        module = get_model(m.arch, field=f"models.{name}.arch", **kwargs)
        subs[name] = SubModel(name=name, arch=m.arch, kwargs=kwargs, module=module, frozen=bool(m.get("frozen", False)),
                              init=m.get("init") or "", capture=tuple(m.get("capture", ()) or ()),
                              train_mode=bool(m.get("train_mode", False)))
    return subs


def model_key(rng, name: str):
    """`rng` folded by a stable hash of the sub-model's name (crc32; Python's hash() varies per process).

    Folding by the name rather than the position in config order pairs runs: seed s gives the Student the same
    initial weights (and dropout stream) in a CE-only baseline (Student alone) and in a method config (Teacher,
    Student), so a method's gain is not confounded with a different student init.
    """
    return jax.random.fold_in(rng, zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF)


class DistillationModel:
    """kernels: `config.kernels` ('auto', 'xla', 'cpu_tuned', 'onednn'; see kdjax/kernels/__init__.py), in effect while
    `apply` traces the sub-models."""

    def __init__(self, submodels: Dict[str, SubModel], kernels: str = KERNELS_AUTO):
        self.kernels = kernels
        self.submodels = submodels
        self.names = list(submodels)
        self.trainable = [n for n in self.names if not submodels[n].frozen]
        self.frozen = [n for n in self.names if submodels[n].frozen]

    def init_variables(self, rng, images):
        """Fresh variables for every sub-model: {name: {"params": ..., "batch_stats": ...}}."""
        out = {}
        for name in self.names:
            variables = self.submodels[name].module.init(
                {"params": model_key(rng, name), "dropout": rng}, images, train=False)
            out[name] = {k: v for k, v in variables.items() if k != COLLECTION}
        return out

    def _run(self, name, variables, images, train, rng):
        sub = self.submodels[name]
        mutable = [COLLECTION, "batch_stats"] if train and "batch_stats" in variables else [COLLECTION]
        extra = {"capture_intermediates": user_module.path_filter(sub.capture)} if sub.by_path and sub.capture else {}
        logits, mutated = sub.module.apply(variables, images, train=train, mutable=mutable,
                                           rngs={"dropout": rng}, **extra)
        features = collect(mutated)
        outputs = {"logits": logits}
        for key in sub.capture:
            outputs[key] = features[key] if key in features else \
                user_module.captured_path(mutated.get(COLLECTION), key)
        return outputs, mutated.get("batch_stats")

    def apply(self, params, batch_stats, frozen_vars, images, *, train: bool, rng):
        """Run every sub-model. Returns (outputs by model name, updated batch_stats of trainable models)."""
        outputs, new_stats = {}, {}
        with using_kernels(self.kernels):
            for name in self.names:
                r = model_key(rng, name)
                if name in frozen_vars:  # its batch statistics stay as loaded, also in train_mode
                    out, _ = self._run(name, frozen_vars[name], images, train and self.submodels[name].train_mode, r)
                    outputs[name] = jax.tree.map(jax.lax.stop_gradient, out)
                else:
                    variables = {"params": params[name]}
                    if name in batch_stats:
                        variables["batch_stats"] = batch_stats[name]
                    outputs[name], stats = self._run(name, variables, images, train, r)
                    if name in batch_stats:
                        new_stats[name] = stats if stats is not None else batch_stats[name]
        return outputs, new_stats

    def apply_views(self, params, batch_stats, frozen_vars, views, *, train: bool, rng):
        """`apply` on each input view in turn; views = {"": images, "strong": images_strong, ...} (the first one the
        batch's own images). Outputs of view v are merged into each model's dict as "<v>/<key>" ("strong/logits");
        the first view's keep their plain names, and with one view this is exactly `apply`.

        BatchNorm of trainable models in train mode: each view is normalised with its own batch statistics, and
        the running averages are updated once per view, in view order (the second view starts from the first's
        update) — as mdistiller's AugTrainer runs `student(image_weak)` then `student(image_strong)` (MLKD), not
        one forward pass on their concatenation. Frozen models run in inference mode on every view.
        """
        outputs, stats = {}, batch_stats
        for k, (view, images) in enumerate(views.items()):
            out, stats = self.apply(params, stats, frozen_vars, images, train=train,
                                    rng=rng if k == 0 else jax.random.fold_in(rng, 7919 + k))
            for name, values in out.items():
                prefix = f"{view}/" if view else ""
                outputs.setdefault(name, {}).update({prefix + key: v for key, v in values.items()})
        return outputs, stats

    def feature_names(self, name, images) -> list:
        """Every feature name `name` records, then (user modules) every submodule path; shapes only, no compute."""
        sub = self.submodels[name]
        extra = {"capture_intermediates": True} if sub.by_path else {}
        found = {}  # module paths seen while tracing

        def run(x):
            rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)}
            variables = sub.module.init(rngs, x, train=False)  # init never records intermediates
            if sub.by_path and "batch_stats" in variables and sub.module.mode_arg is None:
                raise ConfigError(f"models.{name}.arch",
                                  f"{sub.arch} keeps BatchNorm statistics but its __call__ takes no train / training / "
                                  "deterministic / use_running_average argument, so kdjax cannot run it in training "
                                  "mode and in inference mode; add `train: bool = False` to __call__ and pass "
                                  "use_running_average=not train to its BatchNorm layers")
            _, mutated = sub.module.apply(variables, x, train=False, mutable=[COLLECTION], rngs=rngs, **extra)
            found["paths"] = user_module.module_paths(mutated.get(COLLECTION)) if sub.by_path else []
            return collect(mutated)

        try:
            named = jax.eval_shape(run, images)
        except ModelInputError as e:
            raise ConfigError(f"models.{name}.kwargs", str(e)) from None
        return [k for k in named if k != "__call__"] + found["paths"]


def normalize(images, mean, std, dtype=jnp.float32):
    """uint8 NHWC → normalised float, the one preprocessing shared by training, eval, export and infer."""
    x = images.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x.astype(dtype)
