"""VectorIndex: exact = numpy, IVF and HNSW recall, filters without shortfall, removal, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hub.core.errors import InvalidInputError
from hub.search.index import VectorIndex, build_index
from tests.search.conftest import brute_force, clustered

DIM = 64


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """20k clustered vectors with sparse, non-contiguous ids."""
    vectors = clustered(20_000, DIM, seed=0)
    ids = np.arange(20_000, dtype=np.int64) * 7 + 1_000
    return ids, vectors


@pytest.fixture(scope="module")
def exact(data) -> VectorIndex:
    ids, vectors = data
    index = build_index(ids, vectors, exact_threshold=20_001)
    assert index.kind == "flat"
    return index


@pytest.fixture(scope="module")
def approx(data) -> VectorIndex:
    ids, vectors = data
    index = build_index(ids, vectors, approx="hnsw")  # 20_000 is not below the default threshold
    assert index.kind == "hnsw"
    return index


@pytest.fixture(scope="module")
def ivf(data) -> VectorIndex:
    ids, vectors = data
    index = build_index(ids, vectors)  # the default approximate kind
    assert index.kind == "ivf" and index.params == {"nlist": 141, "nprobe": 32}  # ~sqrt(20,000) cells
    return index


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(100, DIM, seed=1)


def test_exact_equals_numpy_brute_force(data, exact, queries) -> None:
    ids, vectors = data
    for q in queries[:30]:
        got = exact.search(q, 10)
        assert [i for i, _ in got] == brute_force(vectors, ids, q, 10)
        want = vectors[np.searchsorted(ids, [i for i, _ in got])] @ (q / np.linalg.norm(q))
        np.testing.assert_allclose([s for _, s in got], want, atol=1e-5)
        assert all(a[1] >= b[1] for a, b in zip(got, got[1:], strict=False))


@pytest.mark.parametrize("which", ["approx", "ivf"])
def test_approximate_recall_at_10_against_exact(request, exact, which, queries) -> None:
    index: VectorIndex = request.getfixturevalue(which)
    hits = [len({i for i, _ in exact.search(q, 10)} & {i for i, _ in index.search(q, 10)}) for q in queries]
    assert np.mean(hits) / 10 >= 0.95


def test_ivf_probes_only_some_cells(data, exact, queries) -> None:
    """One probed cell of 141 misses neighbours that 32 find: nprobe is what the search uses."""
    ids, vectors = data
    narrow = build_index(ids, vectors, nprobe=1)
    assert narrow._index.nlist == 141
    hits = [len({i for i, _ in exact.search(q, 10)} & {i for i, _ in narrow.search(q, 10)}) for q in queries]
    assert np.mean(hits) / 10 < 0.9


def test_ivf_trains_fewer_cells_on_a_small_first_add(data, queries) -> None:
    ids, vectors = data
    index = VectorIndex(DIM, "ivf", nlist=1024)
    assert not index.trained and index.search(queries[0], 3) == []
    index.add(ids[:390], vectors[:390])  # 390 / 39 per cell: 10 cells
    assert index.trained and index._index.nlist == 10 and index.params["nlist"] == 1024
    index.add(ids[390:3000], vectors[390:3000])  # later adds go to the trained cells
    got = [i for i, _ in index.search(queries[0], 10, allowed=ids[:3000:3])]
    assert got == brute_force(vectors[:3000:3], ids[:3000:3], queries[0], 10)
    fresh = index.rebuild()  # trains again on everything: the requested cells where there are enough vectors
    assert fresh._index.nlist == 3000 // 39 and len(fresh) == 3000


@pytest.mark.parametrize("dense", [True, False])
def test_array_filter_by_dense_or_sparse_ids(dense, queries) -> None:
    """Database ids (dense) are looked up in a table, others by binary search: the same results."""
    vectors = clustered(5000, DIM, seed=5)
    ids = np.arange(1, 5001, dtype=np.int64) if dense else np.arange(5000, dtype=np.int64) * 1_000_003
    index = VectorIndex(DIM, "flat")
    index.add(ids, vectors)
    index.remove(ids[:50])
    allowed = np.concatenate([ids[::3], ids[::3][:10], [-1, 10**15]])  # duplicates and unknown ids too
    for q in queries[:5]:
        live = np.arange(50, 5000)
        keep = live[np.isin(ids[live], ids[::3])]
        want = brute_force(vectors[keep], ids[keep], q, 10)
        assert [i for i, _ in index.search(q, 10, allowed=allowed)] == want
    assert (index._sorted[2] is not None) == dense


@pytest.mark.parametrize("which", ["exact", "approx", "ivf"])
def test_array_filter_far_from_query_returns_k_exact_results(request, data, which, queries) -> None:
    index: VectorIndex = request.getfixturevalue(which)
    ids, vectors = data
    q = queries[0]
    order = brute_force(vectors, ids, q, len(ids))
    far = np.array(order[-40:], dtype=np.int64)  # the 40 ids least like the query
    allowed = np.concatenate([far, [-5, 10**12]])  # ids not in the index are ignored
    got = index.search(q, 10, allowed=allowed)
    assert [i for i, _ in got] == order[-40:-30]
    assert index.search(q, 100, allowed=far[:7]) and len(index.search(q, 100, allowed=far[:7])) == 7
    assert index.search(q, 5, allowed=np.array([], dtype=np.int64)) == []


@pytest.mark.parametrize("which", ["exact", "approx", "ivf"])
def test_array_filter_half_of_ids(request, data, which, queries) -> None:
    index: VectorIndex = request.getfixturevalue(which)
    ids, vectors = data
    allowed = ids[::2]
    hits = 0
    for q in queries[:20]:
        got = [i for i, _ in index.search(q, 10, allowed=allowed)]
        assert len(got) == 10 and set(got) <= set(allowed.tolist())
        hits += len(set(got) & set(brute_force(vectors[::2], allowed, q, 10)))
    assert hits / 200 >= (1.0 if which == "exact" else 0.95)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_filter_shortfall_falls_back_to_a_scan(monkeypatch, kind, data, queries) -> None:
    """A graph search with a small ef (IVF: one probed cell) inside a sparse far filter comes back short;
    a scan fills it."""
    import hub.search.index_search as index_module

    monkeypatch.setattr(index_module, "SMALL_SUBSET", 0)  # force the IDSelector path for any subset
    monkeypatch.setattr(index_module, "SMALL_SUBSET_SHARE", 0.0)
    ids, vectors = data
    index = VectorIndex(DIM, kind, ef_search=10, nlist=100, nprobe=1)
    index.add(ids[:6000], vectors[:6000])
    q = queries[3]
    order = brute_force(vectors[:6000], ids[:6000], q, 6000)
    allowed = np.array(order[-60:], dtype=np.int64)
    scans = []
    monkeypatch.setattr(index, "_exact", lambda *a: scans.append(1) or VectorIndex._exact(index, *a))
    got = index.search(q, 50, allowed=allowed)
    assert scans, "the graph search was expected to come back short here"
    assert [i for i, _ in got] == order[-60:-10]


@pytest.mark.parametrize("which", ["exact", "approx", "ivf"])
def test_predicate_deepening_finds_far_permitted_ids(request, data, which, queries) -> None:
    index: VectorIndex = request.getfixturevalue(which)
    ids, vectors = data
    q = queries[5]
    order = brute_force(vectors, ids, q, len(ids))
    permitted = set(order[-12:])  # only the 12 ids least like the query are visible
    asked: list[int] = []
    sizes: list[int] = []

    def predicate(candidates: list[int]) -> set[int]:
        sizes.append(len(candidates))
        asked.extend(candidates)
        return {c for c in candidates if c in permitted} | {-1}  # extras are ignored

    got = index.search(q, 10, allowed=predicate)
    assert [i for i, _ in got] == order[-12:-2]
    assert len(asked) == len(set(asked)) <= len(ids)  # every candidate asked about once
    assert sizes[0] == 10 and 30 <= sizes[1] <= 40  # deepening 10, 40, 160 ... asks only about new ids
    assert max(sizes) <= 4096 and len(sizes) <= 12  # ... in bounded batches, until everything


def test_predicate_terminates_when_fewer_than_k_permitted(exact, approx, ivf, data, queries) -> None:
    ids, _ = data
    few = {int(ids[3]), int(ids[17_000])}
    for index in (exact, approx, ivf):
        got = index.search(queries[0], 10, allowed=lambda c: {i for i in c if i in few})
        assert {i for i, _ in got} == few
        assert index.search(queries[0], 10, allowed=lambda c: set()) == []


def test_predicate_must_return_ids(exact, queries) -> None:
    with pytest.raises(InvalidInputError, match="predicate"):
        exact.search(queries[0], 3, allowed=lambda c: None)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_remove_and_replace(kind, data, queries) -> None:
    ids, vectors = data
    index = VectorIndex(DIM, kind, nprobe=1000)  # IVF: every cell, so exact here
    index.add(ids[:3000], vectors[:3000])
    q = queries[7]
    top = [i for i, _ in index.search(q, 5)]
    assert index.remove(np.array(top[:3] + [123456789])) == 3
    assert len(index) == 2997 and top[0] not in index
    after = [i for i, _ in index.search(q, 5)]
    assert not set(after) & set(top[:3])
    assert after == brute_force(vectors[:3000], ids[:3000], q, 8)[3:]
    assert len(index.search(q, 5, allowed=np.array(top))) == 2
    # re-adding an id (here: with the query itself as its vector) puts it first
    index.add(np.array([top[1]]), q[None, :])
    assert index.search(q, 1)[0][0] == top[1]
    assert len(index) == 2998 and sorted(index.ids().tolist()) == sorted(
        set(ids[:3000].tolist()) - {top[0], top[2]}
    )
    index.add(np.array([ids[10]]), vectors[4000][None, :])  # replace: the old vector is gone
    assert index.search(vectors[4000], 1)[0][0] == ids[10]
    assert len(index) == 2998


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tombstones_and_rebuild(kind, data, queries) -> None:
    ids, vectors = data
    index = VectorIndex(DIM, kind, nprobe=1000)  # IVF: every cell, so exact here
    index.add(ids[:2000], vectors[:2000])
    index.remove(ids[:300])
    assert index.n_tombstones == 300 and not index.needs_rebuild
    index.remove(ids[300:500])
    assert index.needs_rebuild
    fresh = index.rebuild()
    assert fresh.n_tombstones == 0 and not fresh.needs_rebuild and len(fresh) == 1500
    for q in queries[:5]:
        want = brute_force(vectors[500:2000], ids[500:2000], q, 10)
        assert [i for i, _ in index.search(q, 10)] == want
        assert [i for i, _ in fresh.search(q, 10)] == want


def test_bad_input_is_refused_and_nothing_is_added() -> None:
    index = VectorIndex(4)
    index.add(np.array([1, 2]), np.eye(4)[:2])
    for ids, vecs, match in [
        (np.array([3, 4]), np.ones((2, 5)), "shape"),
        (np.array([3, 3]), np.ones((2, 4)), "unique"),
        (np.array([3, 4]), np.array([[1, 0, 0, np.nan], [1, 0, 0, 0]]), "finite"),
        (np.array([3.5, 4.0]), np.ones((2, 4)), "integers"),
        (np.array([[3, 4]]), np.ones((2, 4)), "1-D"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            index.add(ids, vecs)
    assert len(index) == 2
    with pytest.raises(InvalidInputError, match="k must be"):
        index.search(np.ones(4), 0)
    with pytest.raises(InvalidInputError, match="query"):
        index.search(np.ones(3), 1)
    with pytest.raises(InvalidInputError, match="kind"):
        VectorIndex(4, "annoy")
    with pytest.raises(InvalidInputError, match="IVF parameters"):
        VectorIndex(4, "ivf", nprobe=0)
    with pytest.raises(InvalidInputError, match="approx"):
        build_index([1], np.ones((1, 4)), approx="flat")
    assert VectorIndex(4, "hnsw").search(np.ones(4), 3) == []
    assert index.search(np.ones(4), 10)[0][1] == pytest.approx(0.5)  # cosine of (1,1,1,1) and e1


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_stored_vectors_are_normalised_and_sets_are_accepted(kind) -> None:
    index = VectorIndex(3, kind)
    index.add([5, 9], np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]))
    np.testing.assert_allclose(index.vectors([9, 5]), [[0, 0, 1], [0.6, 0.8, 0]], atol=1e-6)
    with pytest.raises(InvalidInputError, match="not in the index"):
        index.vectors([7])
    assert [i for i, _ in index.search([0.0, 0.0, 1.0], 5, allowed={5, 9, 11})] == [9, 5]
    assert index.search([1.0, 0.0, 0.0], 1)[0] == (5, pytest.approx(0.6))


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_changes_during_a_snapshot_are_searched_and_applied_after_it(kind, tmp_path) -> None:
    """While a snapshot is being copied (begin_snapshot .. take) adds and removes go to an overlay: searches,
    lengths and vectors see them at once, the copy is the index as it was when frozen, and afterwards the
    index holds them."""
    rng = np.random.default_rng(3)
    dim, n = 16, 300
    ids, vecs = np.arange(1, n + 1, dtype=np.int64), rng.standard_normal((n, dim)).astype(np.float32)
    index = VectorIndex(dim, kind, nlist=4, nprobe=4)  # IVF probes every cell: exact, like the reference
    index.add(ids, vecs)
    ref = VectorIndex(dim, "flat")
    ref.add(ids, vecs)
    queries = rng.standard_normal((20, dim)).astype(np.float32)
    take = index.begin_snapshot()
    with pytest.raises(InvalidInputError, match="already in progress"):
        index.begin_snapshot()
    new = rng.standard_normal((3, dim)).astype(np.float32)
    index.add([5, 400, 401], new)
    ref.add([5, 400, 401], new)
    assert index.remove([7, 401, 999]) == 2 and ref.remove([7, 401]) == 2
    index.add([7], vecs[8:9] * 2)  # removed, then back
    ref.add([7], vecs[8:9] * 2)
    assert 400 in index and 401 not in index and 7 in index and len(index) == len(ref) == n + 1
    assert sorted(index.ids().tolist()) == sorted(ref.ids().tolist())
    allowed = np.asarray([5, 6, 7, 8, 400, 401], dtype=np.int64)

    def predicate(cands: list[int]) -> set[int]:
        return {i for i in cands if i % 3 == 1}

    def same_answers() -> None:
        for q in queries:
            assert [i for i, _ in index.search(q, 10)] == [i for i, _ in ref.search(q, 10)]
            assert [i for i, _ in index.search(q, 4, allowed=allowed)] == [i for i, _ in ref.search(q, 4, allowed=allowed)]
            assert [i for i, _ in index.search(q, 5, allowed=predicate)] == [
                i for i, _ in ref.search(q, 5, allowed=predicate)]
        np.testing.assert_allclose(index.vectors([5, 6]), ref.vectors([5, 6]), atol=1e-6)

    same_answers()
    take().save(tmp_path, "before")
    same_answers()  # applied to the index itself now
    assert index._overlay is None and 401 not in index._pos and 400 in index._pos
    saved, fp = VectorIndex.load(tmp_path)
    assert fp == "before" and len(saved) == n and 400 not in saved and 7 in saved
    before = vecs[[4, 6]] / np.linalg.norm(vecs[[4, 6]], axis=1, keepdims=True)  # ids 5 and 7 when frozen
    np.testing.assert_allclose(saved.vectors([5, 7]), before, atol=1e-6)


def test_searches_changes_and_snapshots_from_many_threads() -> None:
    """Searches in three threads while a fourth adds, replaces and removes and a fifth takes snapshots: no error,
    every answer has k distinct ids, and the index ends equal to a reference given the same changes."""
    import threading

    rng = np.random.default_rng(5)
    dim, n = 16, 3000
    index = VectorIndex(dim, "ivf", nlist=8, nprobe=8)
    ref = VectorIndex(dim, "flat")
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    index.add(np.arange(n), vecs)
    ref.add(np.arange(n), vecs)
    stop, errors = threading.Event(), []

    def searcher(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                hits = index.search(r.standard_normal(dim).astype(np.float32), 10)
                assert len({i for i, _ in hits}) == 10
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def snapshots() -> None:
        try:
            while not stop.is_set():
                index.snapshot()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)] + [threading.Thread(target=snapshots)]
    for t in threads:
        t.start()
    try:
        for step in range(60):
            ids = rng.choice(n + 200, 5, replace=False)
            new = rng.standard_normal((5, dim)).astype(np.float32)
            index.add(ids, new)
            ref.add(ids, new)
            gone = rng.choice(n + 200, 3, replace=False)
            assert index.remove(gone) == ref.remove(gone), step
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
    assert sorted(index.ids().tolist()) == sorted(ref.ids().tolist())
    for q in rng.standard_normal((10, dim)).astype(np.float32):
        assert [i for i, _ in index.search(q, 10)] == [i for i, _ in ref.search(q, 10)]
