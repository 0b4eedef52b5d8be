"""What a run is built from, by content: fingerprints of its `init` checkpoints and of its data selection.

A run's identity (kdjax/runtime/workdir.py) records them, so that resuming with another teacher behind the same
`init` path, or with other data behind the same config, is refused instead of silently mixing two runs.

File hashes are cached by (path, size, mtime, ctime, inode) in `$XDG_CACHE_HOME/kdjax/file_hashes.json` (or
~/.cache), so a large teacher is read once, not at every resume; a missing or read-only cache only costs time.
`data_fingerprint` is the one place that fingerprints a data source: swap it for a source's own identity when
sources provide one.
"""

import hashlib
import json
import os
from typing import Dict, Optional

import numpy as np

_CHUNK = 1 << 22
_MEMORY: Dict[str, str] = {}


def _cache_path() -> Optional[str]:
    root = os.environ.get("XDG_CACHE_HOME") or (os.path.join(os.path.expanduser("~"), ".cache")
                                                if os.path.expanduser("~") != "~" else None)
    return os.path.join(root, "kdjax", "file_hashes.json") if root else None


def _load_cache() -> Dict[str, str]:
    path = _cache_path()
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def _save_cache(entries: Dict[str, str]):
    path = _cache_path()
    if not path:
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        merged = _load_cache()
        merged.update(entries)
        if len(merged) > 5000:  # keep the newest entries (dicts keep insertion order)
            merged = dict(list(merged.items())[-5000:])
        with open(tmp, "w") as f:
            json.dump(merged, f)
        os.replace(tmp, path)
    except OSError:  # read-only or full HOME: hash again next time
        try:
            os.remove(tmp)
        except OSError:
            pass


def _key(path: str, st) -> str:
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def file_digest(path: str, cache: Optional[Dict[str, str]] = None) -> str:
    """sha256 of a file's bytes (hex), from `cache` when the file is unchanged since it was hashed."""
    st = os.stat(path)
    key = _key(path, st)
    if cache is not None and key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            h.update(block)
    digest = h.hexdigest()
    if cache is not None:
        cache[key] = digest
    return digest


def init_fingerprint(path: str) -> str:
    """`sha256:<hex>` of what `path` holds: a weights file's bytes, or an export's spec.json and every file under
    variables/ (names and bytes)."""
    cache = dict(_load_cache())
    cache.update(_MEMORY)
    before = dict(cache)
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(path):
        digest = file_digest(path, cache)
    else:
        h = hashlib.sha256()
        files = []
        for directory, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(directory, name)
                rel = os.path.relpath(full, path)
                if rel == "spec.json" or rel.startswith("variables" + os.sep):
                    files.append((rel, full))
        for rel, full in files:
            h.update(rel.encode() + b"\0" + file_digest(full, cache).encode() + b"\n")
        digest = h.hexdigest()
    _MEMORY.update(cache)
    if cache != before:
        _save_cache({k: v for k, v in cache.items() if before.get(k) != v})
    return f"sha256:{digest[:32]}"


def _record_bytes(record) -> bytes:
    parts = []
    for key in sorted(record):
        value = np.asarray(record[key])
        parts.append(key.encode() + str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
    return b"\0".join(parts)


def _find(source, attr: str):
    """`source.<attr>` as an array (labels, list paths), looked for through the wrappers kdjax puts around sources
    (limits, SSLD mixtures); None if no layer has it."""
    s = source
    for _ in range(6):
        value = getattr(s, attr, None)
        if value is not None and hasattr(value, "__len__"):
            return np.asarray(value)
        s = getattr(s, "_source", None) or getattr(s, "labeled", None)
        if s is None:
            return None
    return None


def data_fingerprint(source, samples: int = 32) -> Dict[str, object]:
    """{"count", "digest"} of a data source: its length, every label (when it keeps them as an array) and the decoded
    records at `samples` evenly spaced positions. Cheap (a few dozen decodes), deterministic, different when the
    selection differs (another limit, dataset or file contents), and the same for the same images read through
    another route or from another folder (no paths are hashed: moving data does not change a run)."""
    n = len(source)
    h = hashlib.sha256(str(n).encode())
    for attr in ("labels",):
        values = _find(source, attr)
        if values is not None:
            h.update(np.ascontiguousarray(values[:n]).tobytes())
    for i in sorted({int(k) for k in np.linspace(0, n - 1, min(samples, n))}):
        try:
            h.update(_record_bytes(source[i]))
        except Exception as e:  # an unreadable record is part of what the data is
            h.update(f"unreadable:{type(e).__name__}".encode())
    return {"count": n, "digest": f"sha256:{h.hexdigest()[:32]}"}
