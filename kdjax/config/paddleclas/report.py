"""`describe(config)`: what a kdjax config trains, in a few lines a person reads — models, losses (with the name each
term is logged under), optimizer, data, budget — plus, for a translated PaddleClas YAML, where each part came from and
the translation's notes, and what the config needs that is not on this machine (data folders, list files, weights).

Reads the config only (nothing is opened beyond `os.path.exists`), so it works where the dataset or the pretrained
weights are missing: `--mode=check` and `python -m kdjax.tools.paddleclas_translate` print it.
"""

import os
from typing import List, Tuple


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v) if isinstance(v, str) else str(v)


def _data_paths(data) -> List[Tuple[str, str, str]]:
    """(config field, path, kind) of the files a config's data source reads (list files: as written, which kdjax
    reads when it exists, else under data.root)."""
    from kdjax.data.listfile import resolve

    source = data.get("source", "auto")
    out = []
    if data.get("root") and source in ("auto", "list"):
        out.append(("data.root", data.root, "dir"))
        for f in ("train_list", "test_list", "label_names_file"):
            if data.get(f):
                found = resolve(data.root, data.get(f))
                out.append((f"data.{f}", found if os.path.exists(found) else data.get(f), "file"))
    elif source == "idx" and data.get("data_dir"):
        out.append(("data.data_dir", data.data_dir, "dir"))
    elif source == "tfds" and data.get("tfds_data_dir"):
        out.append(("data.tfds_data_dir", data.tfds_data_dir, "dir"))
    return out


def missing_inputs(config) -> List[str]:
    """One line per input the config names that does not exist here (data folders and lists, model inits)."""
    from kdjax.config.paddleclas.arch import official_url

    sources = _sources(config)
    lines = []
    for field, path, kind in _data_paths(config.data):
        exists = os.path.isdir(os.path.expanduser(path)) if kind == "dir" else os.path.isfile(os.path.expanduser(path))
        if not exists:
            origin = f" ({sources[field]})" if field in sources else ""
            lines.append(f"config.{field} = {path}{origin}: no such {'directory' if kind == 'dir' else 'file'}")
    for name, m in config.models.items():
        init = m.get("init") or ""
        if not init and m.get("frozen"):
            lines.append(f"config.models.{name}.init: none, but models.{name} is frozen: give its weights "
                         f"(--config.models.{name}.init=PATH) or init=train to train it here first")
        if init and init != "train" and not os.path.exists(os.path.expanduser(init)):
            origin = f" ({sources.get(f'models.{name}')})" if f"models.{name}" in sources else ""
            hint = ""
            base = os.path.basename(init)
            if base.endswith("_pretrained.pdparams"):
                arch = base[:-len("_pretrained.pdparams")]
                url = official_url(arch[:-len("_ssld")] if arch.endswith("_ssld") else arch, arch.endswith("_ssld"))
                hint = (f"; PaddleClas' official file: {url} (or --config.models.{name}.init=train to train it here "
                        f"first)")
            lines.append(f"config.models.{name}.init = {init}{origin}: no such file or directory{hint}")
    return lines


def _sources(config) -> dict:
    pc = config.get("paddleclas") or None
    return dict(pc.get("sources") or ()) if pc else {}


def _loss_lines(config) -> List[str]:
    from kdjax.errors import ConfigError
    from kdjax.losses import build_losses
    from kdjax.config.metric_names import term_labels

    sources = _sources(config)
    try:
        losses = build_losses(list(config.losses.values()))
    except ConfigError as e:
        return [f"  (the losses do not parse: {e})"]
    labels = term_labels(config, losses)
    lines = []
    for i, (name, entry) in enumerate(config.losses.items()):
        e = losses.entries[i]
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(e.params.items()))
        on = ", ".join("→".join(u) for u in e.units)
        keys = f"{list(e.s_keys)} / {list(e.t_keys)}" if e.spec.multi_key else (
            e.s_key if e.s_key == e.t_key else f"{e.s_key} → {e.t_key}")
        origin = f"   ← {sources[f'losses.{name}']}" if f"losses.{name}" in sources else ""
        lines.append(f"  losses.{name}: {e.weight:g} × {e.type}({params}) on {on} [{keys}]{origin}")
        terms = [t for unit in losses.entry_term_names(i) for t in unit]
        lines.append("      logged as: " + ", ".join(labels[f"loss/{t}"] for t in terms))
    return lines


def describe(config) -> str:
    """The readable summary of `config` (see the module docstring)."""
    sources = _sources(config)
    pc = config.get("paddleclas") or None
    out = []
    if pc and pc.get("yaml"):
        overrides = " ".join(f"-o {o}" for o in pc.overrides)
        out.append(f"kdjax config translated from the PaddleClas YAML {pc.yaml}" + (f" with {overrides}" if overrides
                                                                                      else ""))
    out.append("models:")
    for name, m in config.models.items():
        role = "frozen" if m.frozen else "trained"
        if name == config.export_model:
            role += ", exported"
        init = m.get("init") or ("NONE (needs one)" if m.frozen else "random")
        capture = f", captures {list(m.capture)}" if m.get("capture") else ""
        kwargs = f", kwargs {dict(m.kwargs)}" if m.get("kwargs") else ""
        origin = f"   ← {sources[f'models.{name}']}" if f"models.{name}" in sources else ""
        out.append(f"  models.{name}: {m.arch} ({role}), init {init}{capture}{kwargs}{origin}")
    out.append(f"losses (total = Σ weight × value; names: metric_names={config.get('metric_names', 'kdjax')!r}):")
    out.extend(_loss_lines(config))
    o = config.optim
    sched = o.schedule
    if o.schedule == "step":
        sched += f" (×{_fmt(o.decay_rate)} at epochs {_fmt(list(o.milestones))})"
    momentum = f", momentum {_fmt(o.momentum)}{' nesterov' if o.nesterov else ''}" if o.name == "sgd" else ""
    out.append(f"optimizer: {o.name}{momentum}, lr {_fmt(o.lr)} {sched}, warm-up {_fmt(o.warmup_epochs)} epochs, "
               f"weight decay {_fmt(o.weight_decay)}")
    d = config.data
    where = (f"list files under {d.root} (train {d.train_list}, eval {d.test_list})" if d.get("root")
             else f"{d.name} ({d.source})")
    out.append(f"data: {where}; {d.num_classes or 'dataset'} classes, augment {d.augment}"
               + (f", {d.image_size}×{d.image_size}" if d.image_size else "")
               + (f" (crop scale {_fmt(list(d.crop_scale))}, eval crop ratio {_fmt(d.eval_crop_ratio)})"
                  if d.augment in ("imagenet", "imagenet_train") else "")
               + f", mean {_fmt(list(d.mean))}, std {_fmt(list(d.std))}")
    t = config.train
    out.append(f"train: {_fmt(t.epochs)} epochs, batch {t.batch_size} (eval {t.eval_batch_size}), evaluate every "
               f"{_fmt(t.eval_every_epochs)} epochs, log every {t.log_every_steps} steps, precision "
               f"{config.get('precision', 'float32')}; export {config.export_model}")
    notes = list(pc.notes) if pc else []
    if notes:
        out.append("translation notes (what kdjax does differently, or does not use):")
        out.extend(f"  - {n}" for n in notes)
    missing = missing_inputs(config)
    out.append("missing on this machine:" if missing else "inputs: all present on this machine")
    out.extend(f"  - {m}" for m in missing)
    return "\n".join(out)
