"""Precompute a frozen teacher's logits for the training split once (offline distillation).

    python -m kdjax.tools.cache_teacher --config=configs/kd.py --output=/data/kd_teacher_cache \
        [--model=Teacher] [--top_k=0] [--workdir=DIR] [--batch_size=N] [--config.data.train_limit=...]

then train without running the teacher:

    python -m kdjax.main --config=configs/kd.py --config.data.augment=none \
        --config.teacher_cache=/data/kd_teacher_cache --workdir=...

The teacher is the config's frozen model (or --model); its weights come from its `init` (an export, a converted
checkpoint, .pdparams/.pth), or, for init='train', from WORKDIR/pretrain/<name>/export of an earlier run given by
--workdir. Records are read in index order exactly as training sees them with data.augment='none' (same
train_limit, resize and bad-image substitution) and run through the teacher in inference mode in the config's
precision, data-parallel over the local devices. --top_k=K > 0 stores only the K largest logits per image (plus
their logsumexp): much smaller for 1000 classes, approximate (the rest of the probability mass is spread evenly).
The file format is described in kdjax/data/teacher_cache.py. One process; it uses every local device.

--views=K writes a replay cache instead: K augmented views per image (the config's data.augment, mixup and
cutmix, drawn per record from (seed, view, index)), each view's parameters and the teacher's logits on exactly that
view (kdjax/tools/replay_build.py, kdjax/data/replay_cache.py); training then replays view `epoch mod K`.
"""

import kdjax.runtime.xla_flags  # noqa: F401  (kdjax's XLA flags, as kdjax.main: before JAX starts)

import dataclasses
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from kdjax.cli import flags as cli_flags  # noqa: E402

_CONFIG = cli_flags.DEFINE_config_file("config", None, "The training config whose teacher and data to use.",
                                          lock_config=False)
_OUTPUT = cli_flags.DEFINE_string("output", None, "Directory to write the cache to (must not exist unless --overwrite).")
_MODEL = cli_flags.DEFINE_string("model", None, "The frozen model to cache (default: the config's only frozen model).")
_TOP_K = cli_flags.DEFINE_integer("top_k", 0, "Store only the K largest logits per image (0: all of them).")
_WORKDIR = cli_flags.DEFINE_string("workdir", None, "For init='train': the run whose pretrain/<model>/export to use.")
_BATCH = cli_flags.DEFINE_integer("batch_size", 0, "Images per teacher batch (0: config.train.eval_batch_size).")
_OVERWRITE = cli_flags.DEFINE_bool("overwrite", False, "Replace an existing cache in --output.")
_VIEWS = cli_flags.DEFINE_integer("views", 0, "K > 0: a replay cache of K augmented views per image with their "
                                              "parameters (kdjax/data/replay_cache.py); 0: one un-augmented view.")
_DTYPE = cli_flags.DEFINE_string("dtype", "float32", "--views: float32 (exact) or float16 logits.")


def _pick_model(config, model):
    frozen = [n for n, m in config.models.items() if m.get("frozen")]
    from kdjax.errors import ConfigError

    if model:
        if model not in config.models or not config.models[model].get("frozen"):
            raise ConfigError("", f"--model: {model!r} is not a frozen model of the config "
                                  f"(frozen: {', '.join(frozen) or 'none'})")
        return model
    if len(frozen) != 1:
        raise ConfigError("", f"--model: the config has {len(frozen)} frozen models ({', '.join(frozen) or 'none'}); "
                                     f"name the one to cache with --model")
    return frozen[0]


def load_teacher(config, output: str, *, model: str = None, workdir: str = None, batch_size: int = 0,
                 overwrite: bool = False):
    """The frozen teacher ready to run: a namespace with name, sub, init, checked (config.check's result), run
    (jitted: variables, uint8 images → float32 logits), variables, par, batch (rows per call), num_classes."""
    import types

    import jax
    import jax.numpy as jnp
    import numpy as np

    from kdjax.config.check import check
    from kdjax.models.distillation import build_submodels, normalize
    from kdjax.data.preprocess import run_normalization
    from kdjax.errors import ConfigError
    from kdjax.weights.init import check_variables_match, load_init
    from kdjax.runtime.mesh import make_parallel
    from kdjax.steps import cast_floats

    if jax.process_count() > 1:
        raise ConfigError("", "run kdjax.tools.cache_teacher as one process (it uses every local device)")
    output = os.path.abspath(os.path.expanduser(output))
    if os.path.exists(output) and not overwrite:
        raise ConfigError("", f"--output: {output} exists; pass --overwrite to replace it")
    name = _pick_model(config, model)
    m = config.models[name]
    init = m.get("init") or ""
    if init == "train":
        if not workdir:
            raise ConfigError(f"models.{name}.init", "is 'train': give --workdir of the run that trained it (its "
                                                     f"pretrain/{name}/export is used), or set the init to an export")
        init = os.path.join(os.path.abspath(workdir), "pretrain", name, "export")
        with config.unlocked():
            m.init = init

    checked = check(config, splits=("train",))
    source, info, num_classes = checked.train, checked.info, checked.num_classes
    sub = build_submodels({name: m}, num_classes)[name]
    mean, std = run_normalization(config.data, info)  # as training normalises (data/preprocess.py)
    dtype = jnp.bfloat16 if config.get("precision", "float32") == "bfloat16" else jnp.float32
    sample = normalize(jnp.zeros((2,) + tuple(info.image_shape), jnp.uint8), mean, std)
    abstract = jax.eval_shape(lambda x: sub.module.init({"params": jax.random.PRNGKey(0)}, x, train=False), sample)
    abstract = {k: v for k, v in abstract.items() if k in ("params", "batch_stats")}
    scratch = tempfile.mkdtemp(prefix="kdjax_cache_")
    try:
        loaded = load_init(name, sub, os.path.join(workdir, "imported") if workdir else scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    check_variables_match(name, abstract, loaded, sub.init)
    variables = jax.tree.map(lambda ref, v: np.asarray(v, dtype=ref.dtype), abstract,
                             {k: loaded[k] for k in abstract})

    par = make_parallel(config.get("mesh"))
    variables = par.put(variables)
    shardings = jax.tree.map(lambda a: a.sharding, variables)
    batch = int(batch_size or config.train.get("eval_batch_size", 256))
    batch = max(par.data_size, batch - batch % par.data_size)

    def teacher(v, images):
        v = {c: (cast_floats(t, dtype) if c == "params" else t) for c, t in v.items()}
        return sub.module.apply(v, normalize(images, mean, std, dtype), train=False).astype(jnp.float32)

    run = jax.jit(teacher, in_shardings=(shardings, par.batch_sharding()), out_shardings=par.batch_sharding())
    return types.SimpleNamespace(name=name, sub=sub, init=init, checked=checked, run=run, variables=variables,
                                 par=par, batch=batch, num_classes=num_classes)


def run_teacher(t, images):
    """Logits (numpy float32) of uint8 `images`, padded to the teacher's batch."""
    import numpy as np

    rows = len(images)
    if rows < t.batch:
        images = np.concatenate([images, np.zeros((t.batch - rows,) + images.shape[1:], np.uint8)])
    return np.asarray(t.run(t.variables, t.par.put_batch({"image": images})["image"]))[:rows]


def build_cache(config, output: str, *, model: str = None, top_k: int = 0, workdir: str = None,
                batch_size: int = 0, overwrite: bool = False) -> dict:
    """Write the cache of `model`'s logits on config's training split to `output`; returns the manifest."""
    import numpy as np

    from kdjax.data import teacher_cache as tc
    from kdjax.data.badimages import SubstituteBadImages
    from kdjax.data.options import resizes_records
    from kdjax.data.transforms import EvalRecordTransform
    from kdjax.errors import ConfigError

    if top_k < 0:
        raise ConfigError("", f"--top_k: must be >= 0, got {top_k}")
    t = load_teacher(config, output, model=model, workdir=workdir, batch_size=batch_size, overwrite=overwrite)
    output = os.path.abspath(os.path.expanduser(output))
    name, sub, init, num_classes, batch = t.name, t.sub, t.init, t.num_classes, t.batch
    source = t.checked.train
    n = len(source)
    opts = source.options
    records = SubstituteBadImages(source) if opts.skip_bad_images else source
    resize = EvalRecordTransform(opts.image_size, opts.eval_crop_ratio, opts.interpolation) \
        if resizes_records(dataclasses.replace(opts, augment="none"), source.image_shape) else None

    def read(i):  # the record as the training pipeline sees it with data.augment='none'
        record = records[i]
        record = resize(record) if resize else record
        image = np.asarray(record["image"], np.uint8)
        return (image[..., None] if image.ndim == 2 else image), int(record["label"])

    tmp = output + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    open_memmap = np.lib.format.open_memmap
    labels = open_memmap(os.path.join(tmp, "labels.npy"), "w+", np.int32, (n,))
    if top_k:
        k = min(top_k, num_classes)
        values = open_memmap(os.path.join(tmp, "topk_values.npy"), "w+", np.float32, (n, k))
        indices = open_memmap(os.path.join(tmp, "topk_indices.npy"), "w+", np.int32, (n, k))
        lse = open_memmap(os.path.join(tmp, "logsumexp.npy"), "w+", np.float32, (n,))
    else:
        logits_out = open_memmap(os.path.join(tmp, "logits.npy"), "w+", np.float32, (n, num_classes))
    t0, written = time.perf_counter(), 0
    with ThreadPoolExecutor(max(1, int(config.data.get("num_threads", 2) or 2))) as pool:
        for start in range(0, n, batch):
            items = list(pool.map(read, range(start, min(start + batch, n))))
            rows = len(items)
            out = run_teacher(t, np.stack([im for im, _ in items]))
            labels[start:start + rows] = [lab for _, lab in items]
            if top_k:
                top = np.argsort(-out, axis=-1, kind="stable")[:, :k]
                values[start:start + rows] = np.take_along_axis(out, top, -1)
                indices[start:start + rows] = top
                mx = out.max(-1, keepdims=True)
                lse[start:start + rows] = (mx + np.log(np.exp(out - mx).sum(-1, keepdims=True)))[:, 0]
            else:
                logits_out[start:start + rows] = out
            written += rows
    if written != n:
        raise RuntimeError(f"wrote {written} rows for {n} records")
    arrays = [labels] + ([values, indices, lse] if top_k else [logits_out])
    for a in arrays:
        a.flush()
    del arrays, labels
    manifest = {
        "format": tc.FORMAT, "version": tc.VERSION, "model": name, "arch": sub.arch, "kwargs": dict(sub.kwargs),
        "init": os.path.abspath(os.path.expanduser(init)) if init else "", "num_classes": num_classes, "count": n,
        "top_k": min(top_k, num_classes) if top_k else 0, "precision": config.get("precision", "float32"),
        "data": tc.data_identity(config.data), "fingerprint": tc.fingerprint(source),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    with open(os.path.join(tmp, tc.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.replace(tmp, output)
    return manifest


def main(argv):
    del argv
    from absl import logging as absl_logging

    from kdjax.errors import ConfigError

    absl_logging.set_verbosity(absl_logging.WARNING)
    if _CONFIG.value is None:
        raise ConfigError("", "no --config given; e.g. --config=configs/kd.py")
    if not _OUTPUT.value:
        raise ConfigError("", "no --output directory given")
    if _VIEWS.value:
        from kdjax.tools.replay_build import build_replay_cache

        m = build_replay_cache(_CONFIG.value, _OUTPUT.value, views=_VIEWS.value, model=_MODEL.value,
                               top_k=_TOP_K.value, dtype=_DTYPE.value, workdir=_WORKDIR.value,
                               batch_size=_BATCH.value, overwrite=_OVERWRITE.value)
        out = os.path.abspath(_OUTPUT.value)
        print(f"Cached {m['model']} ({m['arch']}) on {m['views']} replayable views of {m['count']} training images "
              f"in {m['seconds']:.1f}s → {out}\n  train with: --config.teacher_cache={out} (same seed, augment "
              f"and mixing; epoch e replays view e mod {m['views']})", flush=True)
        return
    if _DTYPE.value != "float32":
        raise ConfigError("", "--dtype: only with --views (a replay cache)")
    manifest = build_cache(_CONFIG.value, _OUTPUT.value, model=_MODEL.value, top_k=_TOP_K.value,
                           workdir=_WORKDIR.value, batch_size=_BATCH.value, overwrite=_OVERWRITE.value)
    what = f"top-{manifest['top_k']} logits" if manifest["top_k"] else "logits"
    print(f"Cached {manifest['model']} ({manifest['arch']}) {what} for {manifest['count']} training images in "
          f"{manifest['seconds']:.1f}s → {os.path.abspath(_OUTPUT.value)}\n"
          f"  train with: --config.teacher_cache={os.path.abspath(_OUTPUT.value)} --config.data.augment=none",
          flush=True)


FLAG_NAMES = ('config', 'output', 'model', 'top_k', 'workdir', 'batch_size', 'overwrite', 'views', 'dtype')


def cli():
    from kdjax.cli.run import run_command

    run_command(main, prog="kdjax.tools.cache_teacher", module="kdjax.tools.cache_teacher", doc=__doc__, flag_names=FLAG_NAMES)


if __name__ == "__main__":
    cli()
