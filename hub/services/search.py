"""Search glue: adapter embeddings in the DB, a derived vector index, filtered and visibility-safe search.

Embedding text is the short name (as words) + description + tags, joined by spaces; the namespace is left
out (it names the owner, not the task). Vectors are computed at publish/patch time and stored on the adapter
row with the key of the model and the text recipe (:func:`embedding_key`); rows embedded by an older recipe of
the same model are re-embedded when the index is first loaded (:meth:`SearchService.ensure_index`); the index (``hub.search.index``) is derived from them, persisted under
``settings.index_dir`` with a fingerprint of the DB's vectors, and rebuilt at start when the
fingerprint differs (or by ``loom reindex``, which also re-embeds). Other processes publish too (job workers,
``loom demo``'s background build): a search first compares a cheap watermark of the adapters table with the
one it last saw (at most every ``REFRESH_INTERVAL_S``) and, when it moved, brings the index in step with the
rows whose vector changed. Filters and visibility are given
to the engine as the allowed set, so k results come back whenever k match (no top-k-then-filter
shortfall). Adapters whose name, short name or a tag equals the query rank first. A hit whose cosine is
below ``settings.search_match_threshold`` is a weak match (``match == "weak"``): nothing fits the query
well. Queries are embedded by the query encoder (``settings.search_encoder``: the same model exported to
ONNX Runtime, or torch), through a small LRU cache of recent query embeddings.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import InvalidInputError
from hub.db.models import Adapter, User
from hub.repositories import adapters as repo
from hub.repositories.adapters import AdapterFilters
from hub.services.search_filters import AllowedCache, row_matches
from hub.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.embedder import Embedder

log = logging.getLogger(__name__)

MAX_K = 100
AUTOSAVE_DELAY_S = 5.0
MAX_QUERY = 1000
#: how often a search checks whether other processes changed the adapters (seconds)
REFRESH_INTERVAL_S = 1.0
#: rows stamped up to this long before the last watermark are read again (other hosts' clocks, late commits)
CLOCK_MARGIN_S = 5.0


#: the version of :func:`embedding_text`'s recipe; bump it when the text changes, so stored vectors are redone
#: (2: "words description tags", chosen on benchmarks/data/search_dev.json by benchmarks/search_variants.py;
#: 1 was "words: description Tags: a, b.")
EMBEDDING_TEXT_VERSION = 2
_RECIPE = "+text"


def embedding_text(namespace: str, name: str, description: str, tags: Sequence[str]) -> str:
    """The text embedded for an adapter: its short name as words, its description and tags, space-joined.

    ``namespace`` is accepted (callers pass the full name's parts) but not embedded: it names the owner.
    """
    words = name.replace("-", " ").replace("_", " ").replace(".", " ")
    return " ".join(part for part in (words, description, " ".join(tags)) if part)


def embedding_key(model: str) -> str:
    """What an adapter row records as its ``embedding_model``: the model and the text recipe's version."""
    return f"{model}{_RECIPE}{EMBEDDING_TEXT_VERSION}"


def is_old_recipe(stored: str | None, model: str) -> bool:
    """Whether ``stored`` (a row's ``embedding_model``) is ``model`` with an older text recipe (or none)."""
    return stored is not None and stored != embedding_key(model) and (
        stored == model or stored.startswith(model + _RECIPE))


def vector_hash(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class SearchHit:
    """One result: the adapter, its cosine score, whether it matched the query exactly, and how well.

    ``match`` is ``"good"`` for an exact match or a score at or above the match threshold, else ``"weak"``.
    """

    adapter: Adapter
    score: float
    exact: bool
    match: str = "good"


def match_of(score: float, exact: bool, threshold: float) -> str:
    """``"good"`` when ``exact`` or ``score >= threshold``, else ``"weak"``."""
    return "good" if exact or score >= threshold else "weak"


class SearchService:
    """Embeds adapters, keeps the vector index in step with the DB, answers filtered queries."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        embedder_factory: Callable[[str], Embedder] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self._factory = embedder_factory
        self._embedder: Embedder | None = None
        self._index: Any = None
        self._lock = threading.RLock()
        self._dirty = False
        self._timer: threading.Timer | None = None
        self._mark: tuple[Any, ...] | None = None  # the adapters table's watermark the index reflects
        self._hashes: dict[int, str | None] = {}  # adapter id -> embedding hash the index holds
        self._checked = 0.0
        self._query_encoder: Embedder | None = None
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.query_cache_hits = 0
        self.allowed_cache = AllowedCache(settings.search_filter_cache_s)

    @property
    def embedding_key(self) -> str:
        """The ``embedding_model`` recorded beside vectors this service makes (:func:`embedding_key`)."""
        return embedding_key(self.settings.embedding_model)

    @property
    def match_threshold(self) -> float:
        """Scores below this are weak matches (``settings.search_match_threshold``)."""
        return float(self.settings.search_match_threshold)

    # -- embeddings ---------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    if self._factory is not None:
                        self._embedder = self._factory(self.settings.embedding_model)
                    else:
                        from hub.search.embedder import load_embedder

                        self._embedder = load_embedder(self.settings.embedding_model)
        return self._embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors."""
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    @property
    def query_encoder(self) -> Embedder:
        """What embeds queries: the ONNX export of the embedder (``search_encoder="onnx"``) or the embedder.

        An injected embedder factory (tests, benchmarks) that does not build a sentence-transformers model
        keeps its own embedder for queries too.
        """
        if self._query_encoder is None:
            with self._lock:
                if self._query_encoder is None:
                    self._query_encoder = self._load_query_encoder()
        return self._query_encoder

    def _load_query_encoder(self) -> Embedder:
        from hub.search.embedder import SentenceTransformerEmbedder

        embedder = self.embedder
        if self.settings.search_encoder == "torch" or not isinstance(embedder, SentenceTransformerEmbedder):
            return embedder
        from hub.search.onnx_encoder import load_onnx_encoder

        try:
            return load_onnx_encoder(embedder, self.settings.data_dir / "models",
                                     int8=self.settings.search_encoder == "onnx-int8")
        except (InvalidInputError, ImportError, OSError, RuntimeError) as exc:  # same vectors, only slower
            log.warning("search: the ONNX query encoder is unavailable (%s); queries use torch", exc)
            return embedder

    def embed_query(self, query: str) -> np.ndarray:
        """A query's unit vector ``(dim,)``, from the LRU cache of recent queries when it is there."""
        size = self.settings.search_query_cache
        with self._cache_lock:
            hit = self._query_cache.get(query)
            if hit is not None:
                self._query_cache.move_to_end(query)
                self.query_cache_hits += 1
                return hit
        vec = np.asarray(self.query_encoder.embed([query]), dtype=np.float32)[0]
        vec.setflags(write=False)  # shared by every caller of the same query
        if size > 0:
            with self._cache_lock:
                self._query_cache[query] = vec
                self._query_cache.move_to_end(query)
                while len(self._query_cache) > size:
                    self._query_cache.popitem(last=False)
        return vec

    def embed_adapter(self, namespace: str, name: str, description: str, tags: Sequence[str]) -> bytes:
        """The stored embedding bytes (float32) of an adapter's text."""
        return self.embed([embedding_text(namespace, name, description, tags)])[0].tobytes()

    # -- index --------------------------------------------------------------------------------
    def _fingerprint(self, s: Session) -> str:
        h = hashlib.sha256(self.embedding_key.encode())
        rows = s.execute(select(Adapter.id, Adapter.embedding_hash).order_by(Adapter.id))
        for i, eh in rows:
            h.update(f"{i}:{eh};".encode())
        return h.hexdigest()

    def _build_from_db(self, s: Session) -> Any:
        from hub.search.index import build_index

        ids: list[int] = []
        vecs: list[np.ndarray] = []
        model = self.embedding_key
        for i, blob, m in repo.all_embeddings(s):
            if blob is not None and m == model:
                ids.append(i)
                vecs.append(np.frombuffer(blob, dtype=np.float32))
        dim = vecs[0].shape[0] if vecs else self.embedder.dim
        arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
        return build_index(np.asarray(ids, dtype=np.int64), arr, self.settings.exact_search_threshold,
                           approx=self.settings.search_index)

    def ensure_index(self) -> str:
        """Load the persisted index if it matches the DB, else rebuild it from stored vectors.

        Adapters embedded by an older text recipe of the configured model are re-embedded first.
        Returns "loaded", "rebuilt" or "ready" (already in memory).
        """
        with self._lock:
            if self._index is not None:
                return "ready"
            redone = self.reembed_old_recipe()
            if redone:
                log.info("search: re-embedded %d adapter(s) made with an older embedding text", redone)
            with self.sessions() as s:
                self._mark, self._hashes = repo.watermark(s), dict(repo.embedding_hashes(s, self.embedding_key))
                fp = self._fingerprint(s)
                if self.settings.index_dir.exists():
                    try:
                        from hub.search.index import VectorIndex

                        index, saved = VectorIndex.load(self.settings.index_dir)
                        if saved == fp:
                            self._index = index
                            return "loaded"
                    except Exception:  # noqa: BLE001 - any unreadable index is rebuilt
                        pass
                self._index = self._build_from_db(s)
            self._save(fp)
            return "rebuilt"

    def _save(self, fingerprint: str | None = None) -> None:
        with self._lock:
            if self._index is None:
                return
            if fingerprint is None:
                with self.sessions() as s:
                    fingerprint = self._fingerprint(s)
            if getattr(self._index, "needs_rebuild", False):
                self._index = self._index.rebuild()  # drop HNSW tombstones before persisting
            self.settings.index_dir.mkdir(parents=True, exist_ok=True)
            self._index.save(self.settings.index_dir, fingerprint)
            self._dirty = False

    def save(self) -> None:
        """Persist the in-memory index if it changed (called on shutdown and by the autosave timer)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._dirty:
                self._save()

    def _schedule_save(self) -> None:
        """Persist a few seconds after the last change (debounced), so other processes see a fresh index."""
        if self._timer is None:
            self._timer = threading.Timer(AUTOSAVE_DELAY_S, self._autosave)
            self._timer.daemon = True
            self._timer.start()

    def _autosave(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.save()
        except Exception:  # noqa: BLE001 - the next change or shutdown tries again
            pass

    def is_stale(self) -> bool:
        """Whether the persisted index differs from the DB's vectors."""
        try:
            from hub.search.index import VectorIndex

            _, saved = VectorIndex.load(self.settings.index_dir)
        except Exception:  # noqa: BLE001
            return True
        with self.sessions() as s:
            return saved != self._fingerprint(s)

    def refresh(self, *, force: bool = False) -> int:
        """Bring the loaded index in step with adapters other processes published, changed or deleted.

        At most every ``REFRESH_INTERVAL_S``: cheap when nothing changed (the watermark: two index lookups),
        and when it moved only the rows changed since the last one are read (``updated_at`` index). A row
        deleted elsewhere does not move the watermark: a search that meets its id drops it from the index
        and searches again (:meth:`search`), and ``force`` (``loom fsck``, tests) compares every row now.
        Returns how many index entries changed.
        """
        import time

        with self._lock:
            if self._index is None or (not force and time.monotonic() - self._checked < REFRESH_INTERVAL_S):
                return 0
            self._checked = time.monotonic()
            model = self.embedding_key
            with self.sessions() as s:
                mark = repo.watermark(s)
                if force or self._mark is None or self._mark[1] is None:
                    now = dict(repo.embedding_hashes(s, model))
                    gone = [i for i in self._hashes if i not in now]
                elif mark == self._mark:
                    return 0
                else:  # rows stamped since the last watermark (less a margin for other hosts' clocks)
                    since = self._mark[1] - timedelta(seconds=CLOCK_MARGIN_S)
                    rows = repo.embedding_hashes_since(s, since, int(self._mark[0] or 0))
                    now = dict(self._hashes) | {i: h for i, h, m in rows if m == model}
                    gone = [i for i, _, m in rows if m != model and i in self._hashes]
                    for i in gone:
                        now.pop(i, None)
                changed = [i for i, h in now.items() if self._hashes.get(i, "") != h]
                vectors = repo.embeddings_of(s, changed) if changed else {}
            if gone:
                self._index.remove(np.asarray(gone, dtype=np.int64))
            for i, blob in vectors.items():
                self._index.add(np.asarray([i], dtype=np.int64), np.frombuffer(blob, dtype=np.float32)[None, :])
            self._mark, self._hashes = mark, now
            if gone or vectors or force:
                self.allowed_cache.invalidate()  # rows changed elsewhere: filter and visibility sets may have too
            if gone or vectors:
                self._dirty = True
                self._schedule_save()
            return len(gone) + len(vectors)

    def _forget(self, ids: list[int]) -> None:
        """Drop adapters a search found deleted (by another process) from the index."""
        with self._lock:
            if self._index is not None and ids:
                self._index.remove(np.asarray(ids, dtype=np.int64))
                for i in ids:
                    self._hashes.pop(i, None)
                self._dirty = True
                self._schedule_save()

    def upsert(self, adapter_id: int, vector: bytes) -> None:
        """Put an adapter's new vector into the loaded index (no-op until the index is loaded)."""
        with self._lock:
            if self._index is None:
                return
            self.allowed_cache.invalidate()
            ids = np.asarray([adapter_id], dtype=np.int64)
            self._index.add(ids, np.frombuffer(vector, dtype=np.float32)[None, :])  # replaces an old vector
            self._hashes[adapter_id] = vector_hash(vector)
            self._dirty = True
            self._schedule_save()

    def remove(self, adapter_id: int) -> None:
        self.allowed_cache.invalidate()
        with self._lock:
            if self._index is not None:
                self._index.remove(np.asarray([adapter_id], dtype=np.int64))
                self._hashes.pop(adapter_id, None)
                self._dirty = True
                self._schedule_save()

    def indexed_count(self) -> int:
        self.ensure_index()
        return len(self._index)

    def rebuild(self) -> int:
        """Rebuild the index from the vectors in the DB (no re-embedding); returns its size."""
        with self._lock:
            with self.sessions() as s:
                self._index = self._build_from_db(s)
            self._save()
            return len(self._index)

    def reindex(self, progress: Callable[[int, int], None] | None = None, batch: int = 64) -> int:
        """Re-embed every adapter with the configured model, store the vectors, rebuild the index."""
        with self.sessions() as s:
            ids = list(s.scalars(select(Adapter.id).order_by(Adapter.id)))
        self._reembed(ids, progress, batch)
        return self.rebuild()

    def reembed_old_recipe(self, batch: int = 64) -> int:
        """Re-embed the adapters whose vector comes from an older text recipe of the configured model (a hub
        made before :data:`EMBEDDING_TEXT_VERSION` changed); returns how many. Other models' vectors are left
        to ``loom reindex``/``loom fsck --repair``."""
        model = self.settings.embedding_model
        with self.sessions() as s:
            rows = s.execute(select(Adapter.id, Adapter.embedding_model).where(
                Adapter.embedding.is_not(None), Adapter.embedding_model != self.embedding_key,
                or_(Adapter.embedding_model == model, Adapter.embedding_model.startswith(model + _RECIPE)),
            ).order_by(Adapter.id))
            ids = [int(i) for i, m in rows if is_old_recipe(m, model)]
        self._reembed(ids, None, batch)
        return len(ids)

    def _reembed(self, ids: list[int], progress: Callable[[int, int], None] | None, batch: int) -> None:
        """Embed the current text of adapters ``ids`` and store the vectors (the index is not touched)."""
        total = len(ids)
        for start in range(0, total, batch):
            with self.sessions() as s:
                chunk = list(s.execute(select(Adapter.id, Adapter.namespace, Adapter.name, Adapter.description,
                                              Adapter.tags).where(Adapter.id.in_(ids[start : start + batch]))
                                       .order_by(Adapter.id)))
            vecs = self.embed([embedding_text(r[1], r[2], r[3], r[4] or []) for r in chunk])
            with self.sessions.begin() as s:
                for r, v in zip(chunk, vecs, strict=True):
                    blob = v.astype(np.float32).tobytes()
                    s.execute(
                        update(Adapter)
                        .where(Adapter.id == r[0])
                        .values(embedding=blob, embedding_model=self.embedding_key,
                                embedding_hash=vector_hash(blob), updated_at=Adapter.updated_at)
                    )
            if progress:
                progress(min(start + batch, total), total)

    # -- queries ------------------------------------------------------------------------------
    def search(self, viewer: User | None, query: str, k: int = 10,
               filters: AdapterFilters | None = None, vector: np.ndarray | None = None) -> list[SearchHit]:
        """The ``k`` best visible adapters for ``query`` among those matching ``filters``.

        ``vector``: the query's embedding when the caller already has it (``embed_query(query)``).
        Each hit's ``match`` says whether its score reaches ``match_threshold``.

        Raises:
            InvalidInputError: an empty or overlong query, or k outside 1..100.
        """
        query = (query or "").strip()
        if not query or len(query) > MAX_QUERY:
            raise InvalidInputError(f"q must be 1-{MAX_QUERY} characters", field="q")
        if not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must be in 1..{MAX_K}, got {k}", field="k", value=k)
        f = filters or AdapterFilters()
        self.ensure_index()
        self.refresh()
        qvec = self.embed_query(query) if vector is None else vector
        out = self._search(viewer, query, k, f, qvec, cached=True)
        if out is None:  # a cached allowed set or the index was out of date (another process changed a row)
            self.allowed_cache.invalidate()
            out = self._search(viewer, query, k, f, qvec, cached=False)
        return out or []

    def _search(self, viewer: User | None, query: str, k: int, f: AdapterFilters, qvec: np.ndarray,
                cached: bool) -> list[SearchHit] | None:
        """One search; None when a hit fails the visibility/filter check of its row (a stale cached set)."""
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
            with self._lock:
                hits = self._index.search(qvec, k, allowed=allowed) if (not has_filters or allowed.size) else []
            ordered = list(exact) + [i for i, _ in hits if i not in exact]
            ordered = ordered[:k]
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
                out.append(SearchHit(a, sc, i in exact, match_of(sc, i in exact, self.match_threshold)))
            return out


def _contains(sorted_ids: np.ndarray, i: int) -> bool:
    at = int(np.searchsorted(sorted_ids, i))
    return at < sorted_ids.size and int(sorted_ids[at]) == i
