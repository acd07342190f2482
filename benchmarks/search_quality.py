"""Search quality: recall@1/@5 and MRR of Loom's search service vs plain MiniLM cosine, in one run.

The cards of a held-out set (``benchmarks/data/search_heldout.json``: written before any ranking change and
never tuned on) become adapter rows of a fresh Loom DB (SQLite, migrations applied), embedded by the
service as a publish embeds them; every query then goes through ``SearchService.search`` exactly as
``GET /api/v1/search`` does. The baseline embeds ``name + description + tags`` with the same MiniLM
and ranks by cosine alone. Off-topic queries report how often the service says ``match: weak``.

    python benchmarks/search_bench.py --quality [--heldout benchmarks/data/search_heldout.json]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

HELDOUT = Path(__file__).resolve().parent / "data" / "search_heldout.json"
CALIBRATION = Path(__file__).resolve().parent / "data" / "search_calibration.json"
K = 10


def ranks_to_metrics(ranks: list[int | None]) -> dict[str, float]:
    """recall@1, recall@5 and MRR from 1-based ranks of the right card (None: not in the top K)."""
    n = len(ranks)
    return {
        "r@1": sum(r == 1 for r in ranks) / n,
        "r@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n,
    }


def loom_service(tmp: Path, cards: list[dict], embedder: object, **overrides: object) -> object:
    """A SearchService over a fresh DB holding ``cards`` as public adapters (embedded by the service)."""
    from hub.db.engine import make_engine, make_session_factory
    from hub.db.migrate import upgrade
    from hub.db.models import Adapter, User
    from hub.services.search import SearchService, vector_hash
    from hub.settings import get_settings

    settings = get_settings(data_dir=tmp / "data", **overrides)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    service = SearchService(settings, sessions, embedder_factory=lambda _model: embedder)  # type: ignore[arg-type, return-value]
    with sessions.begin() as s:
        owner = User(name="bench")
        s.add(owner)
        s.flush()
        for c in cards:
            ns, name = c["name"].split("/")
            blob = service.embed_adapter(ns, name, c["description"], c["tags"])
            s.add(Adapter(namespace=ns, name=name, owner_id=owner.id, visibility="public", description=c["description"],
                          tags=c["tags"], base_model="bench/base", latest_version=1, latest_rank=8, embedding=blob,
                          embedding_model=service.embedding_key, embedding_hash=vector_hash(blob)))
    service.ensure_index()
    return service


def rank_of(scores: np.ndarray, names: list[str], target: str) -> int | None:
    order = [names[i] for i in np.argsort(-scores, kind="stable")[:K]]
    return order.index(target) + 1 if target in order else None


def hybrid_rows(cards: list[dict], queries: list[dict], embedder: object) -> dict[str, dict[str, float]]:
    """Hybrid retrieval measured (not used by Loom): Loom's dense scores fused with BM25 (``bm25s``, Snowball
    stemming), by reciprocal rank (k=60) and by adding 0.05 x the max-normalised BM25 score. Empty when
    ``bm25s``/``PyStemmer`` are not installed (``pip install bm25s PyStemmer``)."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return {}
    from hub.services.search import embedding_text

    names = [c["name"] for c in cards]
    dense = embedder.embed([q["q"] for q in queries]) @ embedder.embed(  # type: ignore[attr-defined]
        [embedding_text(*c["name"].split("/"), c["description"], c["tags"]) for c in cards]).T  # (Q, C)
    stem = Stemmer.Stemmer("english")
    corpus = [f"{c['name']} {c['description']} {' '.join(c['tags'])}".replace("/", " ").replace("-", " ") for c in cards]
    bm = bm25s.BM25()
    bm.index(bm25s.tokenize(corpus, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    sparse = np.zeros_like(dense)
    for i, q in enumerate(queries):
        toks = bm25s.tokenize([q["q"]], stopwords="en", stemmer=stem, show_progress=False, return_ids=False)[0]
        sparse[i] = bm.get_scores(toks) if toks else 0.0

    def rrf(*mats: np.ndarray) -> np.ndarray:
        return sum(1.0 / (60 + np.argsort(np.argsort(-m, axis=1, kind="stable"), axis=1) + 1) for m in mats)

    old = embedder.embed([q["q"] for q in queries]) @ embedder.embed(  # type: ignore[attr-defined]
        [f"{c['name']} ({c['name'].split('/')[1].replace('-', ' ').replace('_', ' ')}). {c['description']}"
         + (f" Tags: {', '.join(c['tags'])}." if c["tags"] else "") for c in cards]).T  # the text before issue 20
    fused = {
        "dense, the old text (namespace embedded)": old,
        "dense only (Loom's text, flat index)": dense,
        "BM25 only": sparse,
        "dense + BM25, reciprocal rank fusion": rrf(dense, sparse),
        "dense + 0.05 x BM25 (score fusion)": dense + 0.05 * sparse / np.maximum(sparse.max(1, keepdims=True), 1e-9),
    }
    return {label: ranks_to_metrics([rank_of(m[i], names, q["target"]) for i, q in enumerate(queries)])
            for label, m in fused.items()}


def multi_vector_rows(cards: list[dict], queries: list[dict], embedder: object) -> dict[str, dict[str, float]]:
    """Several vectors per adapter (measured, not used by Loom): Loom's text, the description alone and the
    short name as words, each card scored by the max, the mean or a soft-max (temperature 0.05) of the
    query's cosines with them; fixed choices, not tuned on any held-out set."""
    from hub.services.search import embedding_text

    names = [c["name"] for c in cards]
    qv = embedder.embed([q["q"] for q in queries])  # type: ignore[attr-defined]
    views = [
        [embedding_text(*c["name"].split("/"), c["description"], c["tags"]) for c in cards],
        [c["description"] for c in cards],
        [c["name"].split("/")[1].replace("-", " ").replace("_", " ") for c in cards],
    ]
    sims = np.stack([qv @ embedder.embed(v).T for v in views])  # type: ignore[attr-defined]  # (V, Q, C)
    t = 0.05
    soft = t * np.log(np.exp(sims / t).sum(0))
    rows = {
        "multi-vector (text, description, name): max": sims.max(0),
        "multi-vector: mean": sims.mean(0),
        "multi-vector: soft-max (T=0.05)": soft,
        "two vectors (text, description): max": sims[:2].max(0),
    }
    return {label: ranks_to_metrics([rank_of(m[i], names, q["target"]) for i, q in enumerate(queries)])
            for label, m in rows.items()}


def calibration(embedder: object) -> dict[str, object]:
    """Top-1 cosines on the dev set (testbed zoo + real-task cards, their cues as queries) vs off-topic queries.

    ``search_match_threshold`` was chosen from these numbers (between the highest off-topic top score and
    the 1st percentile of correct on-topic ones), never from the held-out set.
    """
    import re

    from hub.services.search import embedding_text
    from testbed.real.tasks import TASKS as REAL
    from testbed.tasks import TASKS

    cards, queries = [], []
    for ns, tasks in (("zoo", TASKS), ("real", REAL)):
        for t in tasks.values():
            cards.append(embedding_text(ns, t.name, t.description, list(t.tags)))
            queries += [(re.sub(r"[:,]? ?\{x\}\??", "", c).strip(), len(cards) - 1) for c in t.cues + t.heldout_cues]
    vecs = embedder.embed(cards)  # type: ignore[attr-defined]
    scores = embedder.embed([q for q, _ in queries]) @ vecs.T  # (Q, C)
    right = scores.argmax(1) == np.asarray([i for _, i in queries])
    off = (embedder.embed(json.loads(CALIBRATION.read_text())["off_topic"]) @ vecs.T).max(1)  # type: ignore[attr-defined]
    top = scores.max(1)
    return {"cards": len(cards), "queries": len(queries), "off": len(off), "off_max": float(off.max()),
            "on_p1": float(np.percentile(top[right], 1)), "on_p5": float(np.percentile(top[right], 5))}


def bench_smollm2() -> Path:
    """SmolLM2-135M-Instruct as a model folder, converted once under the temp folder the search benchmarks share."""
    from testbed.real.base import smollm2_folder

    return smollm2_folder(Path(tempfile.gettempdir()) / "loom-search-variants")[0]


def reranked_rows(cards: list[dict], queries: list[dict], embedder: object, encoder: str) -> dict[str, object]:
    """Loom's search service with the query-likelihood reranker (``LOOM_SEARCH_RERANK=smollm2``, the hub's
    default weight, depth and margin), as a search that does not ask (``gated``: reranked only when its first hit
    leads by less than the margin) and one that asks (``every``: ``rerank=True``): metrics, misses, per-query
    latency and the share of searches reranked (model loaded and warmed first); ``every_nocache``: the same as
    ``every`` with no card cache (each card's prompt encoded for every query, as before session 20)."""
    out: dict[str, object] = {}
    for mode, rerank, card_mb in (("gated", None, 256.0), ("every", True, 256.0), ("every_nocache", True, 0.0)):
        with tempfile.TemporaryDirectory() as tmp:  # a service each: the second would find the first's scores cached
            service = loom_service(Path(tmp), cards, embedder, search_encoder=encoder,
                                   search_rerank=str(bench_smollm2()), search_rerank_card_cache_mb=card_mb)
            service.search(None, "warm up", k=K, rerank=True)  # type: ignore[attr-defined]  # loads the model
            ranks: list[int | None] = []
            misses, times, reranked = [], [], 0
            for q in queries:
                t = time.perf_counter()
                hits = service.search(None, q["q"], k=K, rerank=rerank)  # type: ignore[attr-defined]
                times.append(time.perf_counter() - t)
                reranked += any(h.rerank_score is not None for h in hits)
                found = [h.adapter.full_name for h in hits]
                rank = found.index(q["target"]) + 1 if q["target"] in found else None
                ranks.append(rank)
                if rank != 1:
                    misses.append((q["q"], q["target"], found[:3], rank))
            out[mode] = {"metrics": ranks_to_metrics(ranks), "misses": misses, "share": reranked / len(queries),
                         "p50_ms": float(np.percentile(times, 50) * 1e3),
                         "p95_ms": float(np.percentile(times, 95) * 1e3), "mean_ms": float(np.mean(times) * 1e3)}
    return out


def evaluate(path: Path = HELDOUT, embedder: object | None = None, encoder: str = "onnx",
             rerank: bool = False) -> dict[str, object]:
    """Run both rankers over the held-out set (and, with ``rerank``, the service with the reranker); returns
    their metrics and the service's misses."""
    from hub.search.embedder import load_embedder

    data = json.loads(path.read_text())
    cards, queries = data["cards"], data["queries"]
    embedder = embedder or load_embedder(device="cpu")
    # the baseline: plain cosine over name + description + tags
    texts = [f"{c['name']} {c['description']} {' '.join(c['tags'])}" for c in cards]
    card_vecs = embedder.embed(texts)  # type: ignore[attr-defined]
    query_vecs = embedder.embed([q["q"] for q in queries])  # type: ignore[attr-defined]
    names = [c["name"] for c in cards]
    plain_ranks: list[int | None] = []
    for q, v in zip(queries, query_vecs, strict=True):
        order = [names[i] for i in np.argsort(-(card_vecs @ v), kind="stable")[:K]]
        plain_ranks.append(order.index(q["target"]) + 1 if q["target"] in order else None)
    with tempfile.TemporaryDirectory() as tmp:
        service = loom_service(Path(tmp), cards, embedder, search_encoder=encoder)
        loom_ranks: list[int | None] = []
        misses = []
        times = []
        for q in queries:
            t = time.perf_counter()
            hits = service.search(None, q["q"], k=K)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - t)
            found = [h.adapter.full_name for h in hits]
            rank = found.index(q["target"]) + 1 if q["target"] in found else None
            loom_ranks.append(rank)
            if rank != 1:
                misses.append((q["q"], q["target"], found[:3], rank))
        weak_on = [getattr(service.search(None, q["q"], k=1)[0], "match", "?") for q in queries]  # type: ignore[attr-defined]
        weak_off = [getattr(service.search(None, q, k=1)[0], "match", "?") for q in data.get("off_topic", [])]  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:  # the same service without the lexical tie-break (cosine alone)
        dense_only = loom_service(Path(tmp), cards, embedder, search_encoder=encoder, search_lexical_weight=0.0)
        dense_ranks: list[int | None] = []
        for q in queries:
            found = [h.adapter.full_name for h in dense_only.search(None, q["q"], k=K)]  # type: ignore[attr-defined]
            dense_ranks.append(found.index(q["target"]) + 1 if q["target"] in found else None)
    return {
        "cards": len(cards), "queries": len(queries), "plain": ranks_to_metrics(plain_ranks),
        "loom": ranks_to_metrics(loom_ranks), "misses": misses, "loom_dense": ranks_to_metrics(dense_ranks),
        "weak_on_topic": sum(m == "weak" for m in weak_on) / len(weak_on),
        "weak_off_topic": sum(m == "weak" for m in weak_off) / max(len(weak_off), 1),
        "n_off_topic": len(weak_off), "p50_ms": float(np.percentile(times, 50) * 1e3),
        "hybrid": hybrid_rows(cards, queries, embedder) | multi_vector_rows(cards, queries, embedder),
        "calibration": calibration(embedder),
        "reranked": reranked_rows(cards, queries, embedder, encoder) if rerank else None,
    }  # fmt: skip


def print_report(res: dict, path: Path) -> None:
    print(f"held-out set: {path} ({res['cards']} cards, {res['queries']} queries)")
    header = f"{'ranker':<42} {'recall@1':>8} {'recall@5':>8} {'MRR':>6}"
    print(header)
    print("-" * len(header))
    for label, key in (("plain MiniLM cosine (name+description+tags)", "plain"),
                       ("Loom, no lexical tie-break (weight 0)", "loom_dense"), ("Loom search service", "loom")):
        m = res[key]
        print(f"{label:<42} {m['r@1']:>8.3f} {m['r@5']:>8.3f} {m['mrr']:>6.3f}")
    for label, m in res["hybrid"].items():
        print(f"{'  ' + label:<42} {m['r@1']:>8.3f} {m['r@5']:>8.3f} {m['mrr']:>6.3f}")
    if res["hybrid"]:
        print("  (the indented rows are measured alternatives, not what Loom serves)")
    print(f"Loom / plain: recall@1 x{res['loom']['r@1'] / max(res['plain']['r@1'], 1e-9):.2f}, "
          f"MRR x{res['loom']['mrr'] / max(res['plain']['mrr'], 1e-9):.2f}; service p50 {res['p50_ms']:.1f} ms per query")  # fmt: skip
    print(f"match 'weak' on the top hit: {res['weak_on_topic']:.3f} of on-topic queries, "
          f"{res['weak_off_topic']:.3f} of {res['n_off_topic']} off-topic queries")  # fmt: skip
    cal = res["calibration"]
    print(f"calibration (dev set, not the held-out one: {cal['cards']} testbed cards, {cal['queries']} cues, "
          f"{cal['off']} off-topic queries): highest off-topic top score {cal['off_max']:.3f}; correct on-topic "
          f"top scores: 1st percentile {cal['on_p1']:.3f}, 5th {cal['on_p5']:.3f}")
    for q, target, found, rank in res["misses"]:
        print(f"  miss: {q!r} -> {target} at {rank}; top: {', '.join(found)}")
    if res.get("reranked"):
        for mode, label in (("gated", "reranked when close (default)"), ("every", "reranked, every search"),
                            ("every_nocache", "reranked, every search, no card cache")):
            rr = res["reranked"][mode]
            m = rr["metrics"]
            print(f"{'Loom search service, ' + label:<42} {m['r@1']:>8.3f} {m['r@5']:>8.3f} {m['mrr']:>6.3f}   "
                  f"{rr['share']:.0%} reranked; per query p50 {rr['p50_ms']:.0f} ms, p95 {rr['p95_ms']:.0f} ms, "
                  f"mean {rr['mean_ms']:.0f} ms")
            for q, target, found, rank in ([] if mode == "every_nocache" else rr["misses"]):
                print(f"  {mode} miss: {q!r} -> {target} at {rank}; top: {', '.join(found)}")
        every, cold = res["reranked"]["every"], res["reranked"]["every_nocache"]
        print(f"card cache: reranked p50 x{cold['p50_ms'] / every['p50_ms']:.2f} faster, mean "
              f"x{cold['mean_ms'] / every['mean_ms']:.2f} (the same ranks: {every['metrics'] == cold['metrics']})")
