"""Persisting a :class:`hub.search.index.VectorIndex`: a snapshot taken without stopping searches or changes, the
file written from it under no lock, and loading it back.

:meth:`IndexPersistence.begin_snapshot` freezes the index; until the copy is taken, adds and removes go to an
overlay (``hub.search.overlay``) that searches merge in. :meth:`IndexSnapshot.save` writes the copy with the
fingerprint of what it holds, atomically (``hub.search.persist``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from hub.core.errors import InvalidInputError, StorageError
from hub.search.arrays import faiss_module
from hub.search.overlay import Overlay
from hub.search.persist import load_arrays, save_arrays

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.rwlock import RWLock

FORMAT_VERSION = 1


class IndexPersistence:
    """The persistence half of :class:`hub.search.index.VectorIndex` (which provides the state annotated here)."""

    kind: str
    dim: int
    params: dict[str, int]
    rebuild_ratio: float
    _index: Any
    _labels: np.ndarray
    _dead: np.ndarray
    _pos: dict[int, int]
    _lock: RWLock
    _overlay: Overlay | None
    if TYPE_CHECKING:  # pragma: no cover
        def __init__(self, dim: int, kind: str = ..., **kw: Any) -> None: ...
        def _add_locked(self, arr: np.ndarray, vecs: np.ndarray) -> None: ...
        def _remove_locked(self, arr: np.ndarray) -> int: ...

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str], fingerprint: str) -> Path:
        """Write the index and ``fingerprint`` (what it was built from) to ``directory/index.npz``.

        The file is written under a temporary name and renamed into place, so a reader sees either
        the old index or the new one, never half of one. Returns the file's path.
        """
        return self.snapshot().save(directory, fingerprint)

    def snapshot(self) -> IndexSnapshot:
        """A copy of the index's persisted state (:meth:`begin_snapshot`, then the copy)."""
        return self.begin_snapshot()()

    def begin_snapshot(self) -> Callable[[], IndexSnapshot]:
        """Freeze the index for a copy of its persisted state; returns the function that copies it (call it once).

        Freezing is instant. From then until the copy is taken (the serialised FAISS index, labels, tombstones:
        seconds for a large index, under no lock) adds and removes go to an overlay that searches merge in
        (:mod:`hub.search.overlay`), and are applied when it is done: neither searches nor changes wait for it,
        and the copy is of the index as it was when frozen.

        Raises:
            InvalidInputError: a snapshot is already in progress.
        """
        with self._lock.write():
            if self._overlay is not None:
                raise InvalidInputError("a snapshot of this index is already in progress")
            self._overlay = Overlay()

        def take() -> IndexSnapshot:
            try:  # frozen: nothing writes the FAISS structures, labels or tombstones now
                meta = {"format": FORMAT_VERSION, "kind": self.kind, "dim": self.dim, "params": self.params,
                        "rebuild_ratio": self.rebuild_ratio}
                arrays = {"faiss": faiss_module().serialize_index(self._index), "labels": self._labels.copy(),
                          "dead": self._dead.copy()}
            finally:
                with self._lock.write():
                    ov, self._overlay = self._overlay, None
                    if ov is not None:
                        gone = [i for i in ov.hidden() if i in self._pos]
                        if gone:
                            self._remove_locked(np.asarray(sorted(gone), dtype=np.int64))
                        if ov.vecs:
                            self._add_locked(np.asarray(list(ov.vecs), dtype=np.int64), np.stack(list(ov.vecs.values())))
            return IndexSnapshot(arrays, meta)

        return take

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> tuple[Self, str]:
        """Read an index written by :meth:`save`; returns ``(index, fingerprint)``.

        Raises:
            StorageError: no index file there, or one that is unreadable or inconsistent.
        """
        arrays = load_arrays(Path(directory))
        try:
            meta = json.loads(arrays["meta"].tobytes().decode())
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown index format {meta.get('format')!r}")
            index = cls(
                int(meta["dim"]),
                str(meta["kind"]),
                rebuild_ratio=float(meta["rebuild_ratio"]),
                **{k: int(v) for k, v in meta["params"].items()},
            )
            inner = faiss_module().deserialize_index(np.ascontiguousarray(arrays["faiss"], dtype=np.uint8))
            labels = arrays["labels"].astype(np.int64)
            dead = arrays["dead"].astype(bool)
            if inner.d != index.dim or inner.ntotal != labels.size or dead.size != labels.size:
                raise ValueError("index, labels and tombstones disagree in size")
            if index.kind == "hnsw":
                inner.hnsw.efSearch = index.params["ef_search"]
            index._index, index._labels, index._dead = inner, labels, dead
            index._pos = {
                int(label): int(p) for p, label in zip(np.flatnonzero(~dead), labels[~dead], strict=True)
            }
            if len(index._pos) != int((~dead).sum()):
                raise ValueError("duplicate live ids")
            return index, str(meta["fingerprint"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise StorageError(f"vector index in {str(directory)!r} is corrupt: {exc}") from exc


@dataclass(frozen=True)
class IndexSnapshot:
    """What :meth:`VectorIndex.snapshot` copied: written by :meth:`save` while the index goes on changing."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def save(self, directory: str | os.PathLike[str], fingerprint: str) -> Path:
        """Write the snapshot and ``fingerprint`` to ``directory/index.npz`` atomically (:meth:`VectorIndex.save`).

        Raises:
            InvalidInputError: ``fingerprint`` is not a str.
            StorageError: the file cannot be written.
        """
        if not isinstance(fingerprint, str):
            raise InvalidInputError(f"fingerprint must be a str, got {type(fingerprint).__name__}")
        meta = json.dumps({**self.meta, "fingerprint": fingerprint}).encode()
        return save_arrays(Path(directory), {**self.arrays, "meta": np.frombuffer(meta, dtype=np.uint8)})
