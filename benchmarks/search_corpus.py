"""Synthetic adapter descriptions and queries for the search benchmark, and their cached embeddings.

Descriptions are ``<verb> <object> <domain> <style>`` combinations (20 x 25 x 20 x 12 = 120,000
distinct texts), ordered by a seeded permutation so any prefix is varied. Queries describe a task in
other words ("I need something that can boil down ...").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

VERBS = [
    "summarize", "classify", "translate", "extract entities from", "generate", "answer questions about",
    "detect toxicity in", "rewrite", "proofread", "tag topics of", "paraphrase", "score the sentiment of",
    "explain", "simplify", "critique", "outline", "fact-check", "redact personal data from",
    "convert to upper case", "write titles for",
]  # fmt: skip
OBJECTS = [
    "legal contracts", "medical notes", "customer reviews", "Python source code", "news articles",
    "tweets", "emails", "SQL queries", "math word problems", "product descriptions", "chat transcripts",
    "research papers", "financial reports", "recipes", "song lyrics", "support tickets", "job postings",
    "patent filings", "movie scripts", "meeting minutes", "insurance claims", "poems", "bug reports",
    "tax forms", "travel itineraries",
]  # fmt: skip
DOMAINS = [
    "for healthcare", "for banking", "for e-commerce", "for education", "for law firms", "for startups",
    "for government agencies", "for video games", "for journalism", "for customer support",
    "for scientific labs", "for real estate", "for logistics", "for pharmaceuticals", "for insurance",
    "for social media", "for human resources", "for cybersecurity", "for agriculture", "for tourism",
]  # fmt: skip
STYLES = [
    "in a formal tone", "in plain English", "as JSON", "with citations", "for beginners", "in German",
    "in French", "as bullet points", "in one sentence", "with a friendly voice", "in Spanish",
    "step by step",
]  # fmt: skip
SYNONYMS = {
    "summarize": "boil down", "classify": "sort into categories", "translate": "render in another language",
    "rewrite": "reword", "proofread": "fix grammar mistakes in", "explain": "make sense of",
    "simplify": "make easier to read", "generate": "write new", "paraphrase": "say differently",
    "convert to upper case": "make every letter a capital in",
}  # fmt: skip
BASE_MODELS = ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.3", "Qwen/Qwen2.5-7B", "google/gemma-2-9b"]
LICENSES = ["apache-2.0", "mit", "cc-by-4.0", "llama3.1"]
N_COMBOS = len(VERBS) * len(OBJECTS) * len(DOMAINS) * len(STYLES)


def descriptions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct template descriptions (n <= 120,000), varied from the first one on."""
    if n > N_COMBOS:
        raise ValueError(f"at most {N_COMBOS} distinct descriptions, asked for {n}")
    order = np.random.default_rng(seed).permutation(N_COMBOS)[:n]
    out = []
    for code in order.tolist():
        code, s = divmod(code, len(STYLES))
        code, d = divmod(code, len(DOMAINS))
        v, o = divmod(code, len(OBJECTS))
        out.append(f"LoRA adapter to {VERBS[v]} {OBJECTS[o]} {DOMAINS[d]}, {STYLES[s]}.")
    return out


def corpus_texts(n: int) -> list[str]:
    """``n`` adapter descriptions: the distinct ones, then (past 120,000) the same again, numbered."""
    base = descriptions(min(n, N_COMBOS))
    return base + [f"{base[i % N_COMBOS][:-1]} (variant {i // N_COMBOS})." for i in range(N_COMBOS, n)]


def queries(n: int, seed: int = 1) -> list[str]:
    """``n`` task descriptions in other words than the adapters' own."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        verb = VERBS[rng.integers(len(VERBS))]
        obj = OBJECTS[rng.integers(len(OBJECTS))]
        dom = DOMAINS[rng.integers(len(DOMAINS))]
        out.append(f"I need something that can {SYNONYMS.get(verb, verb)} {obj.lower()} {dom}")
    return out


def cached_embeddings(texts: list[str], embedder: object, cache_dir: Path, batch: int = 512) -> np.ndarray:
    """Embed ``texts`` once; the vectors are kept in ``cache_dir`` keyed by model and text hash."""
    digest = hashlib.sha256("\n".join([getattr(embedder, "name", "?"), *texts]).encode()).hexdigest()[:16]
    path = cache_dir / f"emb-{len(texts)}-{digest}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), batch):
        parts.append(embedder.embed(texts[start : start + batch]))  # type: ignore[attr-defined]
        print(f"  embedded {min(start + batch, len(texts))}/{len(texts)}", flush=True)
    vecs = np.concatenate(parts).astype(np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vecs)
    tmp.replace(path)
    return vecs


def tile_with_noise(unique: np.ndarray, n: int, sigma: float, seed: int = 2) -> np.ndarray:
    """``n`` unit vectors: the ``unique`` ones, then copies of them plus Gaussian noise, renormalised."""
    if n <= len(unique):
        return unique[:n]
    rng = np.random.default_rng(seed)
    extra = unique[np.arange(len(unique), n) % len(unique)]
    extra = extra + rng.normal(scale=sigma, size=extra.shape).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.concatenate([unique, extra]).astype(np.float32)


def bench_db(settings: Any) -> tuple[Any, Any, int]:
    """A fresh Loom DB for ``settings`` (migrated) with one owner: ``(engine, sessions, owner id)``."""
    from hub.db.engine import make_engine, make_session_factory
    from hub.db.migrate import upgrade
    from hub.db.models import User

    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        owner = User(name="bench")
        s.add(owner)
        s.flush()
        return engine, sessions, int(owner.id)
