"""Search glue: adapter embeddings in the DB, a derived vector index, filtered and visibility-safe search.

Embedding text is the short name (as words) + description + tags, joined by spaces; the namespace is left
out (it names the owner, not the task). Vectors are computed at publish/patch time and stored on the adapter
row with the key of the model and the text recipe (:func:`embedding_key`). The index is kept in step with them
by :class:`hub.services.search_index.IndexKeeper` (built or loaded at start, persisted, synced with other
processes' changes); queries are embedded by :class:`hub.services.search_encoders.SearchEncoders` (ONNX Runtime
or torch, an LRU cache of recent queries). Filters and visibility are given to the engine as the allowed set,
so k results come back whenever k match (no top-k-then-filter shortfall). Adapters whose name, short name or a
tag equals the query rank first; the dense top ``LEXICAL_DEPTH`` after them are reordered by a small lexical
tie-break (:mod:`hub.search.lexical`, ``settings.search_lexical_weight``); scores stay the cosines. When a search
reranks (``settings.search_rerank`` configured; per search ``rerank``), the first ``search_rerank_depth`` of them are
reordered by a small LM's likelihood of the query as a request for each card (:mod:`hub.search.rerank`).
A hit whose cosine is below ``settings.search_match_threshold`` is a weak match
(``match == "weak"``): nothing fits the query well.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import InvalidInputError
from hub.db.models import Adapter, User
from hub.repositories import adapters as repo
from hub.repositories.adapters import AdapterFilters
from hub.search.lexical import card_text
from hub.search.lexical import rerank as lexical_rerank
from hub.services.search_encoders import SearchEncoders
from hub.services.search_filters import AllowedCache, row_matches
from hub.services.search_index import IndexKeeper, fingerprint  # noqa: F401 - fingerprint re-exported
from hub.services.search_reembed import Reembedder
from hub.services.search_text import (  # noqa: F401 - re-exported: callers import them from here
    EMBEDDING_TEXT_VERSION,
    RECIPE,
    embedding_key,
    embedding_text,
    is_old_recipe,
    vector_hash,
)
from hub.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.embedder import Embedder

log = logging.getLogger(__name__)

MAX_K = 100
MAX_QUERY = 1000
#: the lexical tie-break (``settings.search_lexical_weight``) reorders this many of the dense best hits
LEXICAL_DEPTH = 20
#: what :meth:`SearchService._search` returns when its two best cosines are within the rerank margin
_CLOSE: Any = object()


@dataclass(frozen=True)
class SearchHit:
    """One result: the adapter, its cosine score, whether it matched the query exactly, and how well.

    ``match`` is ``"good"`` for an exact match or a score at or above the match threshold, else ``"weak"``.
    ``rerank_score``: the reranker's mean log-probability of the query as a request for this adapter (None: not
    reranked).
    """

    adapter: Adapter
    score: float
    exact: bool
    match: str = "good"
    rerank_score: float | None = None


def match_of(score: float, exact: bool, threshold: float) -> str:
    """``"good"`` when ``exact`` or ``score >= threshold``, else ``"weak"``."""
    return "good" if exact or score >= threshold else "weak"


class SearchService(IndexKeeper):
    """Embeds adapters, keeps the vector index in step with the DB (:class:`IndexKeeper`), answers filtered queries."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        embedder_factory: Callable[[str], Embedder] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.encoders = SearchEncoders(settings, embedder_factory)
        self._init_index()
        self.allowed_cache = AllowedCache(settings.search_filter_cache_s)
        self.reembedder = Reembedder(sessions, settings.embedding_model, lambda texts: self.embed(texts),
                                     self._take_reembedded, self.save)

    @property
    def match_threshold(self) -> float:
        """Scores below this are weak matches (``settings.search_match_threshold``)."""
        return float(self.settings.search_match_threshold)

    # -- embeddings (hub.services.search_encoders) ----------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        return self.encoders.embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors."""
        return self.encoders.embed(texts)

    @property
    def query_encoder(self) -> Embedder:
        """What embeds queries (:attr:`SearchEncoders.query_encoder`)."""
        return self.encoders.query_encoder

    @property
    def query_cache_hits(self) -> int:
        """Queries answered from the cache of recent query embeddings."""
        return self.encoders.query_cache_hits

    def embed_query(self, query: str) -> np.ndarray:
        """A query's unit vector ``(dim,)``, from the LRU cache of recent queries when it is there."""
        return self.encoders.embed_query(query)

    def embed_adapter(self, namespace: str, name: str, description: str, tags: Sequence[str]) -> bytes:
        """The stored embedding bytes (float32) of an adapter's text."""
        return self.embed([embedding_text(namespace, name, description, tags)])[0].tobytes()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the background re-embedding (after its batch in hand; up to ``timeout`` s) and persist the index."""
        if not self.reembedder.stop(timeout):
            log.warning("search: background re-embedding did not stop within %.0f s", timeout)
        self.save()


    def reindex(self, progress: Callable[[int, int], None] | None = None, batch: int = 64) -> int:
        """Re-embed every adapter with the configured model, store the vectors, rebuild the index."""
        with self.sessions() as s:
            ids = list(s.scalars(select(Adapter.id).order_by(Adapter.id)))
        self.reembedder.reembed(ids, progress, batch)
        return self.rebuild()

    def reembed_old_recipe(self, batch: int = 64) -> int:
        """Re-embed, now, the adapters whose vector comes from an older text recipe of the configured model (a hub
        made before :data:`EMBEDDING_TEXT_VERSION` changed), into the loaded index too; returns how many. Other
        models' vectors are left to ``loom reindex``/``loom fsck --repair``. :meth:`ensure_index` does this in
        the background."""
        r = self.reembedder
        return r.reembed(r.old_recipe_ids(), None, batch, only_old=True, live=True)

    # -- queries ------------------------------------------------------------------------------
    @property
    def rerank_available(self) -> bool:
        """Whether searches can rerank (``settings.search_rerank`` names a model); then they do unless asked not to."""
        return self.encoders.rerank_available

    def search(self, viewer: User | None, query: str, k: int = 10,
               filters: AdapterFilters | None = None, vector: np.ndarray | None = None,
               rerank: bool | None = None) -> list[SearchHit]:
        """The ``k`` best visible adapters for ``query`` among those matching ``filters``.

        ``vector``: the query's embedding when the caller already has it (``embed_query(query)``).
        ``rerank``: reorder the best hits with the reranker (None: when one is configured and the best cosine
        leads the second by less than ``settings.search_rerank_margin``).
        Each hit's ``match`` says whether its score reaches ``match_threshold``.

        Raises:
            InvalidInputError: an empty or overlong query, k outside 1..100, or ``rerank`` asked for with no
                reranker configured.
        """
        query = (query or "").strip()
        if not query or len(query) > MAX_QUERY:
            raise InvalidInputError(f"q must be 1-{MAX_QUERY} characters", field="q")
        if not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must be in 1..{MAX_K}, got {k}", field="k", value=k)
        gate = 0.0  # rerank only if the best two cosines are within this (a search that does not say)
        if rerank is None:
            rerank = self.rerank_available
            gate = float(self.settings.search_rerank_margin) if rerank else 0.0
        # a reranked search waits for the model before it takes a DB connection; asking for one on a hub without a
        # reranker raises here (the error names the setting)
        lock = self.encoders.reranker.lock if rerank else contextlib.nullcontext()
        f = filters or AdapterFilters()
        self.ensure_index()
        self.refresh()
        qvec = self.embed_query(query) if vector is None else vector
        if gate > 0:  # without the model first: most searches have a clear first hit and need no reranking
            out = self._search_twice(viewer, query, k, f, qvec, rerank=False, gate=gate)
            if out is not _CLOSE:
                return out
        with lock:
            return self._search_twice(viewer, query, k, f, qvec, rerank=rerank)

    def _search_twice(self, viewer: User | None, query: str, k: int, f: AdapterFilters, qvec: np.ndarray,
                      rerank: bool, gate: float = 0.0) -> Any:
        """:meth:`_search` with the cached allowed set, then (it was out of date: another process changed a row)
        without it."""
        out = self._search(viewer, query, k, f, qvec, cached=True, rerank=rerank, gate=gate)
        if out is None:
            self.allowed_cache.invalidate()
            out = self._search(viewer, query, k, f, qvec, cached=False, rerank=rerank, gate=gate)
        return out or []

    def _search(self, viewer: User | None, query: str, k: int, f: AdapterFilters, qvec: np.ndarray,
                cached: bool, rerank: bool = False, gate: float = 0.0) -> Any:
        """One search; None when a hit fails the visibility/filter check of its row (a stale cached set);
        ``_CLOSE`` when ``gate`` > 0 and the two best cosines are within it (the caller then reranks)."""
        with self.sessions() as s:
            has_filters = f != AdapterFilters()
            allowed: Any
            if has_filters:
                def load() -> list[int]:  # own session: it may run in the cache's refresh thread
                    with self.sessions() as s2:
                        return repo.allowed_ids(s2, viewer, f)

                allowed = self.allowed_cache.get(viewer, f, load) if cached else np.unique(np.asarray(load(), np.int64))
            else:
                allowed = None

                def allowed(ids: list[int]) -> set[int]:  # noqa: F811 - the visibility predicate
                    return set(repo.allowed_ids_among(s, viewer, ids))

            exact = repo.exact_matches(s, viewer, query, None)
            if has_filters:
                exact = [i for i in exact if _contains(allowed, i)]
            exact = exact[:k]
            index = self._index  # a save or rebuild may replace it: search the one in hand
            weight = float(self.settings.search_lexical_weight)
            rerank_depth = int(self.settings.search_rerank_depth) if rerank else 0
            depth = max(k, LEXICAL_DEPTH if weight > 0 else 0, rerank_depth, 2 if gate > 0 else 0)
            hits = index.search(qvec, depth, allowed=allowed) if (not has_filters or allowed.size) else []
            dense = [(int(i), float(sc)) for i, sc in hits if i not in exact]
            if gate > 0 and len(dense) > 1:
                first, second = heapq.nlargest(2, (sc for _, sc in dense))
                if first - second < gate:
                    return _CLOSE
            if weight > 0 or rerank_depth:
                rows = repo.adapters_by_ids(s, list(exact) + [i for i, _ in dense])
            if weight > 0:  # the lexical tie-break among the dense top LEXICAL_DEPTH (hub.search.lexical)
                texts = {i: card_text(a.name, a.description, a.tags or []) for i, _ in dense[:LEXICAL_DEPTH]
                         if (a := rows.get(i)) is not None}
                dense = lexical_rerank(query, dense, texts, weight, LEXICAL_DEPTH)
            likelihood: dict[int, float] = {}
            if rerank_depth:  # the reranker over the first rerank_depth (hub.search.rerank)
                cards = {i: a.description or card_text(a.name, "", []) for i, _ in dense[:rerank_depth]
                         if (a := rows.get(i)) is not None}
                fused = self.encoders.reranker.rerank(query, dense, cards, float(self.settings.search_rerank_weight),
                                                      rerank_depth)
                dense = [(i, cos) for i, cos, _ in fused]
                likelihood = {i: ll for i, _, ll in fused if ll is not None}
            ordered = (list(exact) + [i for i, _ in dense])[:k]
            if weight == 0 and not rerank_depth:
                rows = repo.adapters_by_ids(s, ordered)
            scores = {int(i): float(sc) for i, sc in hits}
            missing = [i for i in ordered if i not in rows]
            if missing:  # deleted by another process (the watermark does not see deletions): forget, ask again
                self._forget(missing)
                if cached:
                    return None
            out: list[SearchHit] = []
            for i in ordered:
                a = rows.get(i)
                if a is None:  # the index is ahead of the DB (deleted meanwhile)
                    continue
                if has_filters and not row_matches(a, viewer, f):
                    if cached:
                        return None
                    continue
                score = scores.get(i)
                if score is None and a.embedding is not None:
                    score = float(np.frombuffer(a.embedding, dtype=np.float32) @ qvec)
                sc = float(score or 0.0)
                out.append(SearchHit(a, sc, i in exact, match_of(sc, i in exact, self.match_threshold),
                                     likelihood.get(i)))
            return out


def _contains(sorted_ids: np.ndarray, i: int) -> bool:
    at = int(np.searchsorted(sorted_ids, i))
    return at < sorted_ids.size and int(sorted_ids[at]) == i
