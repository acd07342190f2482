"""Search benchmark: end-to-end latency and recall of Loom's vector index vs a numpy brute-force baseline.

For each size (default 1k, 10k, 100k synthetic adapters with template descriptions) it registers the
adapters in a SQLite table, builds the exact (flat) and approximate (IVF; HNSW up to ``--hnsw-max``) indexes,
and runs the same
queries through each engine and through a brute-force numpy baseline (normalised matrix @ query,
argpartition), all in this run. End to end = embed the query text + search + load the result rows
from the DB. Prints p50/p95 latencies side by side with their ratio to the baseline, and recall@10 of
each engine against exact search.

    python benchmarks/search_bench.py --sizes 1000,10000,100000 --queries 200

Embeddings: the first ``--unique`` descriptions are embedded for real (cached on disk under
``--cache-dir``); larger corpora tile those vectors with small Gaussian noise (said in the output).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_corpus import (  # noqa: E402
    BASE_MODELS,
    LICENSES,
    cached_embeddings,
    corpus_texts,
    descriptions,
    queries,
    tile_with_noise,
)
from sqlalchemy import JSON, Integer, String, Text, create_engine, insert, select  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker  # noqa: E402

from hub.search.embedder import load_embedder  # noqa: E402
from hub.search.index import build_index  # noqa: E402

K = 10


class Base(DeclarativeBase):
    pass


class BenchAdapter(Base):
    """The rows a search result shows (name, description, tags, base model, license)."""

    __tablename__ = "bench_adapters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    base_model: Mapped[str] = mapped_column(String(128))
    license: Mapped[str] = mapped_column(String(32))


def make_db(path: Path, texts: list[str]) -> sessionmaker[Session]:
    """A SQLite file with one row per adapter (ids 1..n)."""
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    rows = [
        {
            "id": i + 1,
            "name": f"bench/adapter-{i + 1}",
            "description": t,
            "tags": ["bench", f"group-{i % 50}"],
            "base_model": BASE_MODELS[i % len(BASE_MODELS)],
            "license": LICENSES[i % len(LICENSES)],
        }
        for i, t in enumerate(texts)
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 20_000):
            conn.execute(insert(BenchAdapter), rows[start : start + 20_000])
    return sessionmaker(bind=engine)


class NumpyBruteForce:
    """The baseline: every score by one matrix-vector product, top-k by argpartition.

    Same ``search`` signature as :class:`VectorIndex`, so it can stand in for it inside the service.
    """

    def __init__(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.matrix = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, q: np.ndarray, k: int, allowed: object = None) -> list[tuple[int, float]]:
        scores = self.matrix @ (q / np.linalg.norm(q))  # (n,)
        if isinstance(allowed, np.ndarray):
            scores = np.where(np.isin(self.ids, allowed), scores, -np.inf)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        found = [(int(self.ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]
        if callable(allowed):  # the service's visibility check: top-k, then everything if short
            ok = allowed([i for i, _ in found])
            if len(ok) < len(found):
                order = np.argsort(-scores)
                ok = allowed(self.ids[order].tolist())
                return [(int(self.ids[i]), float(scores[i])) for i in order if int(self.ids[i]) in ok][:k]
        return found


class Timed:
    """Wraps an engine and records how long each ``search`` took (seconds)."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.times: list[float] = []

    def __len__(self) -> int:
        return len(self.engine)  # type: ignore[arg-type]

    def search(self, q: np.ndarray, k: int, allowed: object = None) -> list[tuple[int, float]]:
        t = time.perf_counter()
        out = self.engine.search(q, k, allowed=allowed)  # type: ignore[attr-defined]
        self.times.append(time.perf_counter() - t)
        return out


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, p))


def plain_runner(sessions: sessionmaker[Session], embedder) -> Callable[[Timed, str, str | None], list[int]]:
    """End to end without Loom's services: embed, (filter ids from the DB,) search, load the rows."""

    def run(engine: Timed, text: str, base_model: str | None) -> list[int]:
        q = embedder.embed([text])[0]
        with sessions() as s:
            allowed = None
            if base_model is not None:
                stmt = select(BenchAdapter.id).where(BenchAdapter.base_model == base_model)
                allowed = np.fromiter(s.scalars(stmt), dtype=np.int64)
            found = [i for i, _ in engine.search(q, K, allowed=allowed)]
            rows = {r.id: r for r in s.scalars(select(BenchAdapter).where(BenchAdapter.id.in_(found)))}
            return [rows[i].id for i in found if rows[i].name]

    return run


def run_size(
    n: int, args: argparse.Namespace, embedder, unique_vecs: np.ndarray, qtexts: list[str]
) -> list[dict]:
    """Benchmark one corpus size; returns one result dict per engine."""
    texts = corpus_texts(n)
    vecs = tile_with_noise(unique_vecs, n, sigma=args.noise)
    ids = np.arange(1, n + 1, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="loom-search-bench-") as tmp:
        t = time.perf_counter()
        if args.path == "service":
            from search_service import service_runner

            run, swap = service_runner(Path(tmp), texts, vecs, embedder, args.encoder)
        else:
            run, swap = plain_runner(make_db(Path(tmp) / "bench.db", texts), embedder), None
        db_s = time.perf_counter() - t
        builds: dict[str, float] = {}
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # build like `loom reindex`: all cores
        indexes = {}
        kinds = {"exact (flat)": None, "ivf": "ivf"} | ({"hnsw": "hnsw"} if n <= args.hnsw_max else {})
        for name, approx in kinds.items():
            t = time.perf_counter()
            if approx is None:
                indexes[name] = build_index(ids, vecs, exact_threshold=n + 1)
            else:
                indexes[name] = build_index(ids, vecs, exact_threshold=0, approx=approx)
            builds[name] = time.perf_counter() - t
        exact = indexes["exact (flat)"]
        faiss.omp_set_num_threads(args.threads)
        chosen = "exact (flat)" if n < args.exact_threshold else "ivf"
        engines = {"numpy brute force": Timed(NumpyBruteForce(vecs, ids))} | {k: Timed(v) for k, v in indexes.items()}
        print(f"n={n}: DB rows {db_s:.1f}s, builds (all cores) "
              + ", ".join(f"{k} {v:.1f}s" for k, v in builds.items())
              + f"; default engine at this size: {chosen}; load {os.getloadavg()}", flush=True)  # fmt: skip
        qvecs = embedder.embed(qtexts)
        # the same filter as the timed queries (row i has base model BASE_MODELS[(id - 1) % 4])
        masks = [ids[(ids - 1) % len(BASE_MODELS) == j % len(BASE_MODELS)] if args.filter else None
                 for j in range(len(qvecs))]  # fmt: skip
        truth = [{i for i, _ in exact.search(q, K, allowed=m)} for q, m in zip(qvecs, masks, strict=True)]
        hits = {name: sum(len({i for i, _ in e.engine.search(q, K, allowed=m)} & t)
                          for q, m, t in zip(qvecs, masks, truth, strict=True))
                for name, e in engines.items()}  # fmt: skip
        for e in engines.values():
            e.times.clear()
        e2e: dict[str, list[float]] = {name: [] for name in engines}
        cpu: dict[str, list[float]] = {name: [] for name in engines}  # this thread's CPU time
        names = list(engines)
        for j, text in enumerate(qtexts):
            for name in names[j % len(names) :] + names[: j % len(names)]:  # rotate: spread drift fairly
                if swap is not None:
                    swap(engines[name])
                c0, t0 = time.thread_time(), time.perf_counter()
                base_model = BASE_MODELS[j % len(BASE_MODELS)] if args.filter else None
                found = run(engines[name], text, base_model)
                e2e[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
                assert len(found) == K, (name, text, found)
        out = []
        for name in names:
            out.append({
                "n": n, "engine": name + (" *" if name == chosen else ""),
                "build_s": builds.get(name, 0.0),
                "e2e_p50": pct(e2e[name], 50), "e2e_p95": pct(e2e[name], 95),
                "cpu_p50": pct(cpu[name], 50), "cpu_p95": pct(cpu[name], 95),
                "s_p50": pct(engines[name].times, 50), "s_p95": pct(engines[name].times, 95),
                "recall": hits[name] / (K * len(qtexts)),
            })  # fmt: skip
        return out


def print_table(results: list[dict]) -> None:
    header = (f"{'n':>7} {'engine':<20} {'build s':>8} {'e2e p50':>8} {'e2e p95':>8} {'x base':>7} "
              f"{'srch p50':>9} {'srch p95':>9} {'x base':>7} {'recall@10':>9} {'cpu p50':>8} {'cpu p95':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for n in sorted({r["n"] for r in results}):
        rows = [r for r in results if r["n"] == n]
        base = rows[0]
        for r in rows:
            print(f"{n:>7} {r['engine']:<20} {r['build_s']:>8.2f} {r['e2e_p50']:>8.2f} {r['e2e_p95']:>8.2f} "
                  f"{r['e2e_p95'] / base['e2e_p95']:>7.2f} {r['s_p50']:>9.3f} {r['s_p95']:>9.3f} "
                  f"{r['s_p50'] / base['s_p50']:>7.3f} {r['recall']:>9.3f} {r['cpu_p50']:>8.2f} {r['cpu_p95']:>8.2f}")  # fmt: skip
    print(
        "(latencies in ms; 'x base' = this engine / numpy brute force in the same run: e2e p95 and "
        "search-only p50; * = the engine Loom uses at this size; cpu = CPU time of the query's thread "
        "end to end, i.e. its latency on an idle core with --threads 1)"
    )


def set_threads(n: int) -> None:
    """Limit torch, faiss (OpenMP) and numpy's BLAS to ``n`` threads for this process."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    threadpool_limits(n)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="comma-separated corpus sizes")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--unique", type=int, default=10_000, help="descriptions embedded for real")
    p.add_argument("--noise", type=float, default=0.02, help="per-dimension sigma of tiled copies")
    p.add_argument("--exact-threshold", type=int, default=20_000)
    p.add_argument("--hnsw-max", type=int, default=200_000,
                   help="build HNSW too up to this size (its build takes minutes at 100k)")
    p.add_argument(
        "--path",
        choices=["service", "plain"],
        default="service",
        help="end to end through hub.services.search (default) or a plain SQLAlchemy table",
    )
    p.add_argument(
        "--filter",
        action="store_true",
        help="also filter every query by base model (1 in 4 adapters match): no-shortfall path",
    )
    p.add_argument("--threads", type=int, default=1, help="torch/faiss/BLAS threads (1 suits serving)")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "loom" / "search-bench")
    p.add_argument("--encoder", choices=["onnx", "onnx-int8", "torch"], default="onnx",
                   help="the service's query encoder (LOOM_SEARCH_ENCODER)")
    p.add_argument("--quality", action="store_true",
                   help="recall@1/@5 and MRR on the held-out set vs plain MiniLM cosine (no latency run)")
    p.add_argument("--heldout", type=Path, default=None, help="the held-out set (default benchmarks/data/...)")
    p.add_argument("--rerank", action="store_true",
                   help="with --quality: also the service with the reranker (LOOM_SEARCH_RERANK=smollm2)")
    args = p.parse_args(argv)
    if args.quality:
        from search_quality import HELDOUT, evaluate, print_report

        print("command: python benchmarks/search_bench.py " + " ".join(sys.argv[1:] if argv is None else argv))
        set_threads(args.threads)
        path = args.heldout or HELDOUT
        print(f"query encoder: {args.encoder}")
        print_report(evaluate(path, encoder=args.encoder, rerank=args.rerank), path)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print("command: python benchmarks/search_bench.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}")  # fmt: skip
    set_threads(args.threads)
    print(f"load average (1/5/15 min) at start: {os.getloadavg()}")
    print(f"threads: torch, faiss and BLAS limited to {args.threads} per process")
    embedder = load_embedder(device="cpu")
    unique = min(args.unique, max(sizes))
    t = time.perf_counter()
    unique_vecs = cached_embeddings(descriptions(unique), embedder, args.cache_dir)
    print(f"embeddings: {unique} distinct descriptions embedded with {embedder.name} "
          f"({time.perf_counter() - t:.1f}s, cached in {args.cache_dir}); corpora larger than {unique} "
          f"reuse those vectors plus Gaussian noise (sigma {args.noise}/dim), renormalised")  # fmt: skip
    qtexts = queries(args.queries)
    if args.filter:
        print(f"filter: every query is restricted to one base model (1 in {len(BASE_MODELS)} adapters)")
    results = []
    for n in sizes:
        results += run_size(n, args, embedder, unique_vecs, qtexts)
    print(f"load average (1/5/15 min) at end: {os.getloadavg()}")
    print()
    print_table(results)


if __name__ == "__main__":
    main()
