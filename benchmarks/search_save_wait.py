"""How long a search waits while the search service persists its index (an autosave or shutdown save).

Registers ``--size`` adapters with stored random unit vectors in a fresh Loom DB (SQLite, migrations applied),
lets :class:`hub.services.search.SearchService` build its index from them, marks the index changed and saves it
in a thread while the main thread searches back to back (the query's vector is given: no embedding) and, once,
upserts a vector (a publish). Prints the save's duration, search latency without a save, and the latencies of the
searches issued during the save, in the same run.

    python benchmarks/search_save_wait.py --size 200000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from search_corpus import bench_db  # noqa: E402

DIM = 384


class _NoEmbedder:
    dim = DIM

    def embed(self, texts: list[str]) -> np.ndarray:  # queries come with their vectors here
        raise AssertionError("not used")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=50, help="searches timed without a save")
    args = ap.parse_args()

    from sqlalchemy import insert

    from hub.db.models import Adapter
    from hub.services.search import SearchService, embedding_key, vector_hash
    from hub.settings import get_settings

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.size, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(data_dir=Path(tmp) / "data", search_query_cache=0)
        engine, sessions, owner_id = bench_db(settings)
        key = embedding_key(settings.embedding_model)
        with engine.begin() as conn:
            for start in range(0, args.size, 10_000):
                rows = []
                for i in range(start, min(start + 10_000, args.size)):
                    blob = vecs[i].tobytes()
                    rows.append({"id": i + 1, "namespace": "bench", "name": f"adapter-{i + 1}", "owner_id": owner_id,
                                 "visibility": "public", "description": f"adapter number {i + 1}", "tags": ["bench"],
                                 "license": "mit", "base_model": "base", "latest_version": 1, "latest_rank": 16,
                                 "embedding": blob, "embedding_model": key, "embedding_hash": vector_hash(blob)})
                conn.execute(insert(Adapter), rows)
        service = SearchService(settings, sessions, embedder_factory=lambda _m: _NoEmbedder())  # type: ignore[arg-type, return-value]
        t = time.perf_counter()
        service.ensure_index()
        print(f"{args.size} vectors, index {service._index.kind}, built and saved in {time.perf_counter() - t:.1f} s; "
              f"load {os.getloadavg()}", flush=True)
        queries = vecs[rng.integers(0, args.size, 200)] + 0.1 * rng.standard_normal((200, DIM)).astype(np.float32)

        def search(j: int) -> float:
            t0 = time.perf_counter()
            service.search(None, f"query {j}", k=10, vector=queries[j % len(queries)])
            return time.perf_counter() - t0

        idle = sorted(search(j) for j in range(args.queries))
        print(f"search without a save: p50 {1e3 * idle[len(idle) // 2]:.1f} ms, max {1e3 * idle[-1]:.1f} ms")

        service._dirty = True
        done = threading.Event()
        took: list[float] = []

        def save() -> None:
            t0 = time.perf_counter()
            service.save()
            took.append(time.perf_counter() - t0)
            done.set()

        saver = threading.Thread(target=save)
        saver.start()
        time.sleep(0.02)  # let the save begin
        during: list[float] = []
        upsert_wait = None
        j = 0
        while not done.is_set():
            during.append(search(j))
            j += 1
            if upsert_wait is None:
                t0 = time.perf_counter()
                service.upsert(1, vecs[1].tobytes())
                upsert_wait = time.perf_counter() - t0
        saver.join()
        if not during:
            raise SystemExit(f"the save took {took[0]:.3f} s: too short for a search to start during it; use a "
                             "larger --size")
        first = during[0]
        during.sort()
        print(f"save: {took[0]:.2f} s; {len(during)} searches issued during it: first/median/max "
              f"{1e3 * first:.1f} / {1e3 * during[len(during) // 2]:.1f} / {1e3 * during[-1]:.1f} ms; "
              f"an upsert during it waited {1e3 * (upsert_wait or 0):.1f} ms")
        service._dirty = False
        engine.dispose()


if __name__ == "__main__":
    main()
