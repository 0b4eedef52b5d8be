"""Data source `list`: PaddleClas list files, an image root plus `relative/path.JPEG label` per line (the ILSVRC2012
layout).

The whole list is parsed up front so that a malformed line, a label out of range, a file that is not UTF-8 text
(a byte-order mark and CRLF line ends are fine) or an empty split fails before training starts, naming the file and
line. Every listed image is checked to exist then too, from one directory listing per folder (no stat() per file,
no decoding; see `check_files_exist`).
"""

import codecs
import os
import sys
from typing import List, Optional, Tuple

import numpy as np

from kdjax.data.decode import BadImage, read_file
from kdjax.data.decoded import EncodedImages, Unreadable, resolve_channels
from kdjax.data.labels import label_names_from_file
from kdjax.data.registry import SourceKind, register_source
from kdjax.errors import ConfigError, DataError


def resolve(root: Optional[str], path: str) -> str:
    """A list path as given when absolute or existing, otherwise relative to the image root."""
    if os.path.isabs(path) or not root or os.path.exists(path):
        return path
    return os.path.join(root, path)


def parse_list(list_path: str, *, num_classes: int, labeled: bool = True):
    """(relative paths as a bytes array, int32 labels, int32 line numbers) of a list file.

    Each non-blank line is `path label`, split at the last whitespace, so paths may contain spaces. With
    `labeled=False` (the SSLD unlabeled list) the label column is optional and ignored.
    """
    if not os.path.isfile(list_path):
        raise DataError(f"list file {list_path} does not exist")
    paths: List[bytes] = []
    labels: List[int] = []
    lines: List[int] = []
    for number, raw in text_lines(list_path):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if not labeled:
            path = parts[0] if len(parts) == 2 and _is_int(parts[1]) else line
            paths.append(path.encode())
            labels.append(0)
            lines.append(number)
            continue
        if len(parts) != 2 or not _is_int(parts[1]):
            raise DataError(f"{list_path} line {number}: expected `relative/path label`, got {line[:200]!r}")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise DataError(f"{list_path} line {number}: label {label} is out of range for "
                            f"data.num_classes={num_classes} (labels must be 0..{num_classes - 1})")
        paths.append(parts[0].encode())
        labels.append(label)
        lines.append(number)
    if not paths:
        raise DataError(f"{list_path}: the split is empty (no `path label` lines)")
    return np.array(paths), np.asarray(labels, np.int32), np.asarray(lines, np.int32)


_OTHER_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
               (codecs.BOM_UTF16_BE, "UTF-16"))


def text_lines(path: str):
    """(line number, text) of a UTF-8 text file; a UTF-8 byte-order mark and CRLF/CR line ends are accepted. Any
    other encoding (UTF-16/32, Latin-1 bytes) is a DataError naming the file and the first line that is not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path} ({os.strerror(e.errno) if e.errno else e})") from None
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            raise DataError(f"{path} is {name} text; kdjax reads UTF-8: save it as UTF-8 (e.g. `iconv -f {name} "
                            f"-t UTF-8`)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\0" in data:
        number = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise DataError(f"{path} line {number} holds NUL bytes: the file is not UTF-8 text (UTF-16 without a "
                        f"byte-order mark?); save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        number = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path} line {number} is not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}; "
                        f"Latin-1 or another encoding?); save the file as UTF-8") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return enumerate(text.split("\n"), start=1)


def check_files_exist(root: str, paths, lines, list_path: str, *, allow_missing: bool = False) -> int:
    """Every listed file exists under `root`; returns how many do not (`allow_missing`: data.skip_bad_images),
    else raises DataError naming the first missing one and its line.

    One directory listing per folder rather than a stat() per file (folders with a few listed files are stat'ed):
    on 100k files in 100 folders (warm cache, a busy 2-core machine) 0.4-0.7 s, against 1.5-1.6 s for 100k
    os.path.isfile calls; on network file systems, where each stat is a round trip, the gap is far larger."""
    root_b = os.fsencode(root or ".")
    by_dir = {}
    for i, p in enumerate(paths):
        p = bytes(p)
        head, _, base = (p if p.startswith(b"/") else root_b + b"/" + p).rpartition(b"/")
        by_dir.setdefault(head, []).append((i, base))
    missing = []
    for directory, entries in by_dir.items():
        names = None
        if len(entries) > 8:
            try:
                names = set(os.listdir(directory or b"/"))
            except OSError:  # not a folder, or not listable: ask each file
                names = None
        for i, base in entries:
            if names is not None:
                if base not in names:
                    missing.append(i)
            elif not os.path.isfile(directory + b"/" + base):
                missing.append(i)
    if missing and not (allow_missing and len(missing) < len(paths)):
        first = min(missing)
        full = os.path.join(root or "", bytes(paths[first]).decode("utf-8", "replace"))
        more = f" ({len(missing)} of {len(paths)} listed files are missing)" if len(missing) > 1 else ""
        hint = "" if allow_missing else "; fix the list or data.root (or set data.skip_bad_images=True to skip them)"
        raise DataError(f"{list_path} line {lines[first]}: {full} does not exist{more}{hint}")
    return len(missing)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_label_names(path: str, num_classes: int) -> List[str]:
    """One class name per line, optionally prefixed by its id (PaddleClas' class_id_map_file: `0 tench`)."""
    if not os.path.isfile(path):
        raise DataError(f"label names file {path} does not exist")
    names = []
    with open(path, "r", encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            head, _, rest = line.partition(" ")
            names.append(rest.strip() if rest and _is_int(head) else line)
    if num_classes and len(names) != num_classes:
        raise DataError(f"{path} has {len(names)} label names but data.num_classes={num_classes}")
    return names


class ListFileSource(EncodedImages):
    """Random-access records {"image": uint8 HWC, "label": int32} decoded from the files a list names.

    Images keep their own size (`image_shape` is (None, None, channels)); the pipeline resizes them per record.
    `channels` 0 decodes each image to its own channels; `open_source` resolves it for a split (kdjax/data/labels.py).
    Batches are decoded in a thread pool, or the split once into memory (kdjax/data/decoded.py).
    """

    def __init__(self, root: Optional[str], list_path: str, *, num_classes: int, labeled: bool = True,
                 channels: int = 0, threads: int = 2, allow_missing: bool = False):
        self.root = root or ""
        self.list_path = resolve(root, list_path)
        self.num_classes = num_classes
        self.channels, self.threads = int(channels), int(threads)
        self.image_shape = (None, None, self.channels or 3)
        self._paths, self.labels, self._lines = parse_list(self.list_path, num_classes=num_classes,
                                                           labeled=labeled)
        missing = check_files_exist(self.root, self._paths, self._lines, self.list_path, allow_missing=allow_missing)
        if missing:
            print(f"kdjax: warning: {missing} of {len(self._paths)} files listed in {self.list_path} do not exist; "
                  f"data.skip_bad_images replaces them by the next good image", file=sys.stderr, flush=True)
        self.description = f"list {self.list_path} ({len(self.labels)} images under {self.root or '.'})"

    def __len__(self):
        return len(self.labels)

    def path(self, index: int) -> str:
        return os.path.join(self.root, self._paths[index].decode())

    def origin(self, index: int) -> str:
        return f"{self.path(index)} ({self.list_path} line {self._lines[index]})"

    def encoded(self, index: int) -> bytes:
        """The file's bytes as stored (prepare_data copies them into ArrayRecord without re-encoding)."""
        return read_file(self.path(index), self.origin(index))

    def _fetch(self, indices):
        out = []
        for i in indices:
            try:
                out.append((self.encoded(i), self.labels[i], self.origin(i)))
            except BadImage as e:
                out.append(Unreadable(e))
        return out


def _num_classes_for_lists(data) -> Tuple[int, Optional[List[str]]]:
    num_classes = int(data.get("num_classes") or 0)
    names = label_names_from_file(data, num_classes, data.get("root"))
    num_classes = num_classes or (len(names) if names else 0)
    if num_classes <= 0:
        raise ConfigError("data.num_classes", "list files need the number of classes: set data.num_classes (or "
                                              "data.label_names_file)")
    return num_classes, names


def _open_list(data, split):
    root = data.get("root")
    if not root:
        raise ConfigError("data.root", "source='list' needs the image root directory (data.root)")
    if not os.path.isdir(root):
        raise DataError(f"image root {root} (config.data.root) does not exist")
    list_path = data.get(f"{split}_list") or ("train_list.txt" if split == "train" else "val_list.txt")
    num_classes, names = _num_classes_for_lists(data)
    source = ListFileSource(root, list_path, num_classes=num_classes, threads=int(data.get("num_threads", 2) or 2),
                            allow_missing=bool(data.get("skip_bad_images")))
    source.channels = resolve_channels(data, source)
    source.image_shape = (None, None, source.channels)
    source.location, source.default_data = os.path.abspath(os.path.expanduser(root)), False
    source.dataset_name = data.get("name") or os.path.basename(source.location.rstrip("/"))
    return source, num_classes, names


def _open_unlabeled(data):
    return ListFileSource(data.root, data.unlabeled_list, num_classes=0, labeled=False,
                          allow_missing=bool(data.get("skip_bad_images")))


def _check(data):
    path = data.get("root")
    if path and not os.path.isdir(os.path.expanduser(path)):
        raise DataError(f"config.data.root: {path!r} does not exist or is not a directory; fix the path "
                        f"(or unset it to use the default data)")


register_source(SourceKind(
    "list", _open_list, named=lambda data: bool(data.get("root")), priority=20, check=_check, open_unlabeled=_open_unlabeled,
    unlabeled_field="unlabeled_list", summary="PaddleClas list files under data.root (JPEG/PNG)"))
