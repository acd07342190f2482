"""How soon a hub whose adapters were embedded by an older text recipe answers its first search.

Registers ``--size`` adapters in a fresh Loom DB (SQLite, migrations applied) whose stored vectors are
recorded as the configured model's without a text-recipe version (a hub from before the recipe changed), then
starts Loom's search service with the real MiniLM embedder and times: the index being ready, the first search
answered, and (when the service re-embeds in the background) the re-embedding finished.

    python benchmarks/search_reembed_start.py --size 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from search_corpus import bench_db  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from sqlalchemy import insert

    from hub.db.models import Adapter
    from hub.search.embedder import load_embedder
    from hub.services.search import SearchService, vector_hash
    from hub.settings import get_settings

    verbs = ["Converts", "Summarizes", "Translates", "Classifies", "Extracts", "Rewrites", "Detects", "Answers"]
    things = ["support tickets", "legal contracts", "news articles", "product reviews", "SQL questions", "emails",
              "recipes", "medical notes", "tweets", "song lyrics"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(data_dir=Path(tmp) / "data", search_encoder="torch")
        engine, sessions, owner_id = bench_db(settings)
        rows = []
        for i in range(args.size):
            vec = rng.standard_normal(384).astype(np.float32)
            blob = (vec / np.linalg.norm(vec)).tobytes()  # stands in for the old recipe's vector
            rows.append({"id": i + 1, "namespace": "bench", "name": f"adapter-{i + 1}", "owner_id": owner_id,
                         "visibility": "public", "tags": ["bench"], "license": "mit", "base_model": "base",
                         "description": f"{verbs[i % 8]} {things[(i // 8) % 10]} (variant {i})",
                         "latest_version": 1, "latest_rank": 16, "embedding": blob,
                         "embedding_model": settings.embedding_model, "embedding_hash": vector_hash(blob)})
        with engine.begin() as conn:
            conn.execute(insert(Adapter), rows)
        embedder = load_embedder(settings.embedding_model, device="cpu")
        embedder.embed(["warm up"])
        service = SearchService(settings, sessions, embedder_factory=lambda _m: embedder)  # type: ignore[arg-type, return-value]
        t0 = time.perf_counter()
        service.ensure_index()
        ready = time.perf_counter() - t0
        hits = service.search(None, "summarize legal contracts", k=5)
        first = time.perf_counter() - t0
        print(f"{args.size} adapters with old-recipe vectors, load {os.getloadavg()}")
        print(f"index ready {ready:.2f} s, first search answered {first:.2f} s ({len(hits)} hits)")
        reembedder = getattr(service, "reembedder", None)
        if reembedder is not None:
            reembedder.wait()
            print(f"background re-embedding of {reembedder.done} adapters finished at {time.perf_counter() - t0:.1f} s")
        if hasattr(service, "close"):
            service.close()
        engine.dispose()


if __name__ == "__main__":
    main()
