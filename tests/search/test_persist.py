"""Saving and loading an index keeps its results and fingerprint; concurrent use is safe."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hub.core.errors import InvalidInputError, StorageError
from hub.search.index import VectorIndex, load
from hub.search.persist import INDEX_FILE
from tests.search.conftest import clustered

DIM = 32


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_round_trip_keeps_results_and_fingerprint(tmp_path, kind) -> None:
    vectors = clustered(3000, DIM, seed=2)
    ids = np.arange(3000, dtype=np.int64) * 3
    index = VectorIndex(DIM, kind, m=16, ef_search=64)
    index.add(ids, vectors)
    index.remove(ids[:100])
    queries = clustered(20, DIM, seed=3)
    allowed = ids[::5]
    before = [index.search(q, 10) for q in queries] + [index.search(q, 7, allowed=allowed) for q in queries]

    path = index.save(tmp_path / "idx", fingerprint="model=x;rows=2900;max=8997")
    assert path.name == INDEX_FILE and [p.name for p in path.parent.iterdir()] == [INDEX_FILE]
    loaded, fingerprint = load(tmp_path / "idx")
    assert fingerprint == "model=x;rows=2900;max=8997"
    assert (loaded.kind, loaded.dim, loaded.params, len(loaded)) == (kind, DIM, index.params, 2900)
    assert loaded.n_tombstones == index.n_tombstones
    after = [loaded.search(q, 10) for q in queries] + [loaded.search(q, 7, allowed=allowed) for q in queries]
    assert after == before
    loaded.add(np.array([1]), queries[0][None, :])  # still mutable after loading
    assert loaded.search(queries[0], 1)[0][0] == 1

    index.remove(ids[100:200])
    index.save(tmp_path / "idx", fingerprint="second")  # overwrite in place
    again, fp = VectorIndex.load(tmp_path / "idx")
    assert fp == "second" and len(again) == 2800


def test_missing_or_corrupt_index_is_a_storage_error(tmp_path) -> None:
    with pytest.raises(StorageError, match="no vector index"):
        load(tmp_path)
    (tmp_path / INDEX_FILE).write_bytes(b"not a zip archive")
    with pytest.raises(StorageError, match="unreadable"):
        load(tmp_path)
    index = VectorIndex(4)
    index.add(np.array([1, 2]), np.eye(4)[:2])
    index.save(tmp_path, "fp")
    data = dict(np.load(tmp_path / INDEX_FILE))
    data["labels"] = data["labels"][:1]
    with open(tmp_path / INDEX_FILE, "wb") as f:
        np.savez(f, **data)
    with pytest.raises(StorageError, match="corrupt"):
        load(tmp_path)
    with pytest.raises(InvalidInputError, match="fingerprint"):
        index.save(tmp_path, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_searches_run_safely_while_another_thread_adds_and_removes(kind) -> None:
    vectors = clustered(4000, DIM, seed=4)
    index = VectorIndex(DIM, kind, m=16, ef_search=64)
    index.add(np.arange(1000), vectors[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            for start in range(1000, 4000, 100):
                index.add(np.arange(start, start + 100), vectors[start : start + 100])
                index.remove(np.arange(start - 1000, start - 950))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = vectors[rng.integers(0, 4000)]
                got = index.search(q, 10)
                assert len(got) == 10 and len({i for i, _ in got}) == 10
                assert len(index.search(q, 5, allowed=np.arange(0, 4000, 2))) == 5
                assert len(index.search(q, 5, allowed=lambda c: {i for i in c if i % 3 == 0})) == 5
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(s,)) for s in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(index) == 4000 - 30 * 50


def test_failed_write_leaves_the_old_index_whole(tmp_path, monkeypatch) -> None:
    index = VectorIndex(4)
    index.add(np.array([1, 2]), np.eye(4)[:2])
    index.save(tmp_path, "old")
    index.add(np.array([3]), np.eye(4)[2:3])

    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    import hub.search.persist as persist

    monkeypatch.setattr(persist.np, "savez", disk_full)
    with pytest.raises(StorageError, match="could not write"):
        index.save(tmp_path, "new")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [INDEX_FILE]  # the temporary file is gone
    loaded, fingerprint = load(tmp_path)
    assert fingerprint == "old" and sorted(loaded.ids().tolist()) == [1, 2]
