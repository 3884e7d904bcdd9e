"""The toolkit's own .npz files (snapshots, loss surfaces): arrays plus a JSON ``meta`` array naming the format.

Torch-free: the renderer reads surface files with it.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from tracer.errors import TracerError


def read_npz(
    path: pathlib.Path, *, what: str, format_name: str, missing_hint: str, error: type[TracerError] = TracerError
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every array of the file and its metadata, once the metadata says ``format_name``.

    Raises ``error`` naming the file when it is missing (with ``missing_hint``:
    how such a file is written), is not an .npz, or is another format.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found ({missing_hint})") from None
    except (OSError, ValueError) as problem:
        raise error(f"{path}: not a {what} file: {problem}") from None
    try:
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict) or meta.get("format") != format_name:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ValueError(f"format {found!r}, expected {format_name!r}")
    except (KeyError, ValueError) as problem:
        raise error(f"{path}: not a tracer {what} file ({problem})") from None
    return arrays, meta
