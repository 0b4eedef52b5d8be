"""`data.label_names_file` on every route (IDX, list files, TFDS): one class name per line (`id name` lines work
too). A relative path is taken as given when it exists, else relative to the data's folder; a missing file is a
ConfigError naming the field."""

import os
from typing import List, Optional

from kdjax.errors import ConfigError


def label_names_from_file(data, num_classes: int, base_dir: Optional[str]) -> Optional[List[str]]:
    """The names `data.label_names_file` lists (None when it is not set); `num_classes` > 0 must match their count."""
    from kdjax.data.listfile import read_label_names  # one parser for label files and lists

    name = data.get("label_names_file")
    if not name:
        return None
    path = os.path.expanduser(name)
    if not os.path.isabs(path) and not os.path.exists(path) and base_dir:
        path = os.path.join(os.path.expanduser(base_dir), path)
    if not os.path.isfile(path):
        where = f" (nor under {base_dir})" if base_dir and not os.path.isabs(os.path.expanduser(name)) else ""
        raise ConfigError("data.label_names_file", f"{name!r} does not exist{where}; give a file with one class "
                                                   f"name per line, or unset it")
    return read_label_names(path, num_classes)
