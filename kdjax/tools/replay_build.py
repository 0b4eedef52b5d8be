"""`python -m kdjax.tools.cache_teacher --views=K`: the frozen teacher once over K replayable views per training
record, storing each view's parameters and the teacher's logits on it (format: kdjax/data/replay_cache.py).

View v of record i is exactly what a `data.replayable=True` run feeds the student in epoch v (the same
`ReplayRecords` function builds both), so training from the cache (epoch e reads view e mod K) with K >= epochs
is the live-teacher run without the teacher. The cache is written into OUTPUT.tmp view by view; an interrupted
build resumes from its last finished view when the same command runs again, and is moved to OUTPUT when done.
"""

import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kdjax.data import replay_cache as rc
from kdjax.data.replay import PARAM_FIELDS
from kdjax.errors import ConfigError


def _plan(t, config, views: int, top_k: int, dtype: str) -> dict:
    """Everything the rows depend on; a partial build is resumed only under the same plan."""
    from kdjax.data.replay_pipeline import view_source
    from kdjax.data.teacher_cache import data_identity
    from kdjax.runtime.fingerprint import data_fingerprint, init_fingerprint

    source = t.checked.train
    recipe = view_source(source, source.options, int(config.seed)).recipe
    identity = {"data": data_identity(config.data), "data_fingerprint": data_fingerprint(source),
                "recipe": recipe.describe(), "seed": int(config.seed),
                "teacher_init": init_fingerprint(t.init) if t.init else ""}
    k = min(top_k, t.num_classes) if top_k else 0
    return {"format": rc.FORMAT, "version": rc.VERSION, "model": t.name, "arch": t.sub.arch,
            "kwargs": dict(t.sub.kwargs), "init": os.path.abspath(t.init) if t.init else "",
            "num_classes": t.num_classes, "count": len(source), "views": int(views), "top_k": k, "dtype": dtype,
            "precision": config.get("precision", "float32"), "identity": identity}


def _arrays(directory: str, plan: dict, mode: str) -> dict:
    n, k, c, top = plan["count"], plan["views"], plan["num_classes"], plan["top_k"]
    dt = rc.DTYPES[plan["dtype"]]
    shapes = {"labels": ((n,), np.int32)}
    shapes.update({f: (rc.param_shape(f, n, k), rc.PARAM_DTYPES[f]) for f in PARAM_FIELDS})
    if top:
        shapes.update(topk_values=((n, k, top), dt), topk_indices=((n, k, top), np.int32),
                      logsumexp=((n, k), np.float32))
    else:
        shapes["logits"] = ((n, k, c), dt)
    if mode == "size":
        return {f: int(np.prod(s)) * np.dtype(d).itemsize for f, (s, d) in shapes.items()}
    return {f: np.lib.format.open_memmap(os.path.join(directory, f + ".npy"), mode, d, s)
            for f, (s, d) in shapes.items()}


def _store(out: dict, rows: slice, v: int, logits: np.ndarray, top: int) -> float:
    """Write one batch's logits for view v; returns the largest probability mass outside the top k."""
    if not top:
        out["logits"][rows, v] = logits
        return 0.0
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :top]
    values = np.take_along_axis(logits, order, -1)
    mx = logits.max(-1, keepdims=True)
    lse = (mx + np.log(np.exp(logits - mx).sum(-1, keepdims=True)))[:, 0]
    out["topk_values"][rows, v], out["topk_indices"][rows, v], out["logsumexp"][rows, v] = values, order, lse
    return float(np.max(1.0 - np.exp(values - lse[:, None]).sum(-1), initial=0.0))


def build_replay_cache(config, output: str, *, views: int, model: str = None, top_k: int = 0,
                       dtype: str = "float32", workdir: str = None, batch_size: int = 0, overwrite: bool = False,
                       log=print) -> dict:
    from kdjax.data.badimages import SubstituteBadImages
    from kdjax.data.indexed import IndexedRecords
    from kdjax.data.replay import ReplayRecords
    from kdjax.data.replay_pipeline import view_source
    from kdjax.tools.cache_teacher import load_teacher, run_teacher

    if views < 1:
        raise ConfigError("", f"--views: must be >= 1, got {views}")
    if top_k < 0:
        raise ConfigError("", f"--top_k: must be >= 0, got {top_k}")
    if dtype not in rc.DTYPES:
        raise ConfigError("", f"--dtype: {dtype!r}; use one of {', '.join(rc.DTYPES)}")
    t = load_teacher(config, output, model=model, workdir=workdir, batch_size=batch_size, overwrite=overwrite)
    output = os.path.abspath(os.path.expanduser(output))
    plan = _plan(t, config, views, top_k, dtype)
    source = t.checked.train
    n, top = plan["count"], plan["top_k"]
    tmp = output + ".tmp"
    done, rest_mass = 0, 0.0
    if os.path.isfile(os.path.join(tmp, "manifest.json")):
        import json

        with open(os.path.join(tmp, "manifest.json")) as f:
            partial = json.load(f)
        if {k: partial.get(k) for k in plan} == plan:
            done, rest_mass = int(partial.get("views_done", 0)), float(partial.get("max_rest_mass", 0.0))
    if not done:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        out = _arrays(tmp, plan, "w+")
    else:
        out = _arrays(tmp, plan, "r+")
        log(f"resuming {tmp}: {done} of {views} views already cached")
    size = sum(_arrays(tmp, plan, "size").values())
    log(f"caching {plan['model']} ({plan['arch']}) on {views} view(s) of {n} training images "
        f"({views * n} teacher forward passes), {'top-%d' % top if top else 'all'} logits in {dtype}: "
        f"{size / 2**20:.1f} MiB on disk in {output}")
    vs = view_source(source, source.options, int(config.seed))  # live draws: view v = epoch v
    indexed = IndexedRecords(source)
    records = SubstituteBadImages(indexed) if source.options.skip_bad_images else indexed
    replay = ReplayRecords(vs, records.__getitem__)

    def make(i, v):  # exactly what a replayable run's pipeline yields for record i in epoch v
        rec = replay(records[i], v * n)
        p = vs.get(int(rec["index"]), v)
        return np.asarray(rec["image"], np.uint8), int(rec["label"]), p

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, int(config.data.get("num_threads", 2) or 2))) as pool:
        for v in range(done, views):
            next_report = 0.0
            for start in range(0, n, t.batch):
                rows = slice(start, min(start + t.batch, n))
                items = list(pool.map(lambda i: make(i, v), range(rows.start, rows.stop)))
                logits = run_teacher(t, np.stack([im for im, _, _ in items]))
                rest_mass = max(rest_mass, _store(out, rows, v, logits, top))
                if v == 0:
                    out["labels"][rows] = [lab for _, lab, _ in items]
                for f in PARAM_FIELDS:
                    out[f][rows, v] = [p[f] for _, _, p in items]
                frac = (v - done + rows.stop / n) / (views - done)
                if frac >= next_report or rows.stop == n:
                    el = time.perf_counter() - t0
                    print(f"\r  view {v + 1}/{views}  {rows.stop}/{n} images  {100 * frac:5.1f}%  "
                          f"{(frac * (views - done) * n) / max(el, 1e-9):.0f} img/s  "
                          f"eta {el / max(frac, 1e-9) - el:.0f}s", end="", file=sys.stderr, flush=True)
                    next_report = frac + 0.02
            for a in out.values():
                a.flush()
            rc.write_manifest(tmp, dict(plan, views_done=v + 1, max_rest_mass=rest_mass))
    print(file=sys.stderr, flush=True)
    manifest = dict(plan, views_done=views, max_rest_mass=rest_mass, seconds=round(time.perf_counter() - t0, 3))
    del out
    rc.write_manifest(tmp, manifest)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.replace(tmp, output)
    return manifest
