"""Atomic, pickle-free storage of a named set of numpy arrays (the vector index's file format)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from hub.core.errors import StorageError

INDEX_FILE = "index.npz"


def save_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``directory/index.npz`` atomically (temporary file, fsync, rename).

    Raises:
        StorageError: the directory cannot be created or written.
    """
    target = directory / INDEX_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle kw
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StorageError(f"could not write the vector index to {str(target)!r}: {exc}") from exc
    return target


def load_arrays(directory: Path) -> dict[str, np.ndarray]:
    """Read the arrays written by :func:`save_arrays` (``allow_pickle=False``: object arrays are refused).

    Raises:
        StorageError: the file is missing, unreadable or not an array archive.
    """
    path = directory / INDEX_FILE
    if not path.is_file():
        raise StorageError(f"no vector index at {str(path)!r}", path=str(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise StorageError(f"vector index at {str(path)!r} is unreadable: {exc}") from exc
