"""What data a run read: its identity (name, route, location, split sizes, a fingerprint of the contents), recorded in
the workdir (config.json, summary.json) and the export (spec.json "data"), and checked when an export is evaluated.

The fingerprint hashes the number of records and 32 evenly spaced decoded records (pixels and label): the same
images read through another route (IDX → `prepare_data` → TFDS, or a copied folder) have the same fingerprint,
other data almost surely not. Cheap: 32 decodes.
"""

import hashlib
import os
from typing import List, Optional, Tuple

import numpy as np

from kdjax.data.decode import BadImage

FINGERPRINT_RECORDS = 32


def innermost(source):
    """The source a wrapper chain (LimitedSource, SubstituteBadImages, IndexedRecords, ...) reads from."""
    for _ in range(8):
        if "dataset_name" in getattr(source, "__dict__", {}):
            return source
        inner = getattr(source, "__dict__", {}).get("_source")
        if inner is None:
            return source
        source = inner
    return source


def read_safely(source, indices) -> List[Optional[dict]]:
    """Records `indices` (None for one that cannot be decoded), through the batched read when there is one."""
    from kdjax.data.sources import read_records

    try:
        return list(read_records(source, indices))
    except BadImage:
        out = []
        for i in indices:
            try:
                out.append(source[int(i)])
            except BadImage:
                out.append(None)
        return out


def evenly_spaced(n: int, k: int) -> List[int]:
    return np.unique(np.linspace(0, n - 1, min(n, k)).astype(np.int64)).tolist() if n else []


def fingerprint(source) -> str:
    n = len(source)
    h = hashlib.sha1(f"kdjax-data-1 {n}".encode())
    for record in read_safely(source, evenly_spaced(n, FINGERPRINT_RECORDS)):
        if record is None:
            h.update(b"undecodable")
            continue
        image = np.ascontiguousarray(np.asarray(record["image"], np.uint8))
        h.update(str(image.shape).encode())
        h.update(image.tobytes())
        h.update(str(int(record["label"])).encode())
    return h.hexdigest()[:16]


def split_identity(source, split_name: str) -> dict:
    return {"split": split_name, "count": len(source), "fingerprint": fingerprint(source)}


def dataset_identity(kind_name: str, source, num_classes: int, label_names, channels: int) -> dict:
    inner = innermost(source)
    return {
        "name": getattr(inner, "dataset_name", "") or "",
        "route": kind_name,
        "location": getattr(inner, "location", "") or "",
        "default_data": bool(getattr(inner, "default_data", False)),
        "num_classes": int(num_classes),
        "label_names": list(label_names) if label_names else None,
        "channels": int(channels),
    }


def reopen_fields(data, kind_name: str, source, split: str) -> dict:
    """The config.data fields that open this split again from anywhere (`kdjax.infer --from_dataset`): absolute
    paths, the resolved name; nothing named for the default data (it is found the same way again)."""
    inner = innermost(source)
    fields = {"source": kind_name, f"{split}_split": data.get(f"{split}_split", split)}
    if getattr(inner, "default_data", False):
        return {"source": "auto"}
    fields["name"] = getattr(inner, "dataset_name", "") or data.get("name") or ""
    if kind_name == "idx":
        fields["data_dir"] = inner.location
    elif kind_name == "list":
        fields["root"] = os.path.abspath(inner.root)
        fields[f"{split}_list"] = os.path.abspath(inner.list_path)
    elif kind_name == "tfds":
        fields["tfds_data_dir"] = os.path.dirname(inner.location)
    if data.get("num_classes"):
        fields["num_classes"] = int(data.num_classes)
    if data.get("image_size"):
        fields["image_size"] = int(data.image_size)
    return fields


def compare(recorded: dict, current: dict, field_hint: str) -> Tuple[List[str], List[str]]:
    """(errors, warnings) for evaluating a model trained on `recorded` data (spec.json "data") on `current`."""
    errors, warnings = [], []
    if not recorded:
        return errors, warnings
    what = describe(recorded)
    if int(recorded.get("num_classes", 0) or 0) and recorded["num_classes"] != current["num_classes"]:
        errors.append(f"the export was trained on {what} with {recorded['num_classes']} classes, but this data "
                      f"({describe(current)}) has {current['num_classes']}")
    elif recorded.get("label_names") and current.get("label_names") and \
            list(recorded["label_names"]) != list(current["label_names"]):
        errors.append(f"the export was trained on {what} whose classes are {_short(recorded['label_names'])}, but "
                      f"this data ({describe(current)}) has {_short(current['label_names'])}")
    elif recorded.get("default_data") != current.get("default_data"):
        named = "no data is named, so the default Fashion-MNIST was read" if current.get("default_data") else \
            f"this config reads {describe(current)}"
        errors.append(f"the export was trained on {what}, but {named}; {field_hint}")
    test = recorded.get("test") or {}
    now = current.get("test") or {}
    if not errors and test.get("fingerprint") and now.get("fingerprint") != test.get("fingerprint"):
        warnings.append(f"evaluating on other test data than the export was tested on at training ({what}: "
                        f"{test.get('count')} images, fingerprint {test.get('fingerprint')}; now "
                        f"{describe(current)}: {now.get('count')} images, fingerprint {now.get('fingerprint')}); "
                        f"fine for a new test set with the same classes in the same order")
    return errors, warnings


def describe(identity: dict) -> str:
    name = identity.get("name") or "?"
    where = identity.get("location") or ""
    return f"{name!r} ({identity.get('route', '?')}{' in ' + where if where else ''})"


def _short(names) -> str:
    names = list(names)
    return ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")
