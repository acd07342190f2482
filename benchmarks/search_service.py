"""The search benchmark's end-to-end path through Loom's own search service (hub.services.search).

Registers the synthetic adapters as rows of Loom's real schema (SQLite, migrations applied) with their
stored embeddings, builds the service's index from the DB, and answers each query with
``SearchService.search`` (embed + exact-name/tag matches + index search with the visibility
predicate + loading the result rows). The engine under test is swapped in as the service's index.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from search_corpus import BASE_MODELS, LICENSES, bench_db
from sqlalchemy import insert

K = 10


def service_runner(
    tmp: Path, texts: list[str], vecs: np.ndarray, embedder: object, encoder: str = "onnx"
) -> tuple[Callable[[object, str, str | None], list[int]], Callable[[object], None]]:
    """Returns ``(run(engine, text) -> ids, swap(engine))`` over a fresh Loom DB under ``tmp``."""
    from hub.db.models import Adapter
    from hub.repositories.adapters import AdapterFilters
    from hub.services.search import SearchService, embedding_key, vector_hash
    from hub.settings import get_settings

    # the service builds its own index at start as a hub would (`loom serve`: read the stored vectors, build,
    # save; timed below as the index rebuild); the engines under test then replace it
    # query_cache 0: every engine embeds every query (the same texts repeat across engines, so a cache would
    # hand later engines a free embedding)
    settings = get_settings(data_dir=tmp / "data", search_query_cache=0, search_encoder=encoder)
    engine, sessions, owner_id = bench_db(settings)
    def row(i: int) -> dict:
        blob = np.asarray(vecs[i], dtype=np.float32).tobytes()
        return {
            "id": i + 1, "namespace": "bench", "name": f"adapter-{i + 1}", "owner_id": owner_id,
            "visibility": "public", "description": texts[i], "tags": ["bench", f"group-{i % 50}"],
            "license": LICENSES[i % len(LICENSES)], "base_model": BASE_MODELS[i % len(BASE_MODELS)],
            "latest_version": 1, "latest_rank": 16, "embedding": blob,
            "embedding_model": embedding_key(settings.embedding_model), "embedding_hash": vector_hash(blob),
        }  # fmt: skip

    with engine.begin() as conn:
        for start in range(0, len(texts), 10_000):
            conn.execute(insert(Adapter), [row(i) for i in range(start, min(start + 10_000, len(texts)))])
    service = SearchService(settings, sessions, embedder_factory=lambda _model: embedder)  # type: ignore[arg-type, return-value]
    t, c = time.perf_counter(), time.process_time()
    service.ensure_index()
    print(f"  service start-up index rebuild from the DB ({len(texts)} stored vectors: read, fingerprint, build "
          f"{service._index.kind}, save): {time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} s CPU, "
          f"load {os.getloadavg()}", flush=True)  # fmt: skip
    if len(service._index) != len(texts):
        raise RuntimeError(f"the service indexed {len(service._index)} of {len(texts)} adapters")

    def swap(engine_: object) -> None:
        service._index = engine_  # the engine under test answers the service's index searches

    def run(engine_: object, text: str, base_model: str | None) -> list[int]:
        filters = AdapterFilters(base_model=base_model) if base_model else None
        hits = service.search(None, text, k=K, filters=filters)
        return [h.adapter.id for h in hits]

    return run, swap
