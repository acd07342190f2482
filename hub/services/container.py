"""The composition root: every service of a running hub, built once, each with the dependencies it needs.

``create_app`` (the API), the CLI's local commands and ``loom worker`` build a :class:`Hub` from
:class:`~hub.settings.Settings`; nothing here runs at import time. Services receive the parts they use
(sessions, the blob store, other services), never the container. :func:`job_handlers` is the one
table of job kinds and the handlers that run them.

Adding a job kind: write one module with the handler (a class taking its dependencies, with a
``run(job, report) -> dict`` method) and the service that submits it (``jobs.submit(KIND, ...)``), then
add one line to :func:`job_handlers` (and build the submitting service below if it is new).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.core.errors import InvalidInputError
from hub.db import make_engine, make_session_factory
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy
from hub.jobs.queue import JobQueue
from hub.jobs.worker import Handler
from hub.jobs.workers import WorkerTable
from hub.services import compositions, generation, hf_resync, router_training
from hub.services.adapters import AdapterService
from hub.services.auth_throttle import AuthThrottle
from hub.services.base_files import BaseFiles
from hub.services.base_models import BaseModelService
from hub.services.composition_job import CompositionJob
from hub.services.compositions import CompositionService
from hub.services.fsck import Fsck
from hub.services.generation import GenerationService
from hub.services.generation_jobs import GenerationJobs
from hub.services.hf import HfService
from hub.services.hf_client import HubClient
from hub.services.hf_export import HfExporter
from hub.services.hf_imports import HfImports
from hub.services.hf_resync import HfResync
from hub.services.hf_webhooks import HfWebhooks
from hub.services.jobs import JobService
from hub.services.metrics import Metrics
from hub.services.publish import Publisher
from hub.services.ray_cluster import RayConnection, task_settings
from hub.services.ray_jobs import RayJobDispatcher
from hub.services.router_training import RouterTrainingService
from hub.services.router_training_job import RouterTrainingJob
from hub.services.search import SearchService
from hub.services.sources import SourceResolver
from hub.services.users import UserService
from hub.settings import Settings
from hub.storage import open_store

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi

    from hub.search.embedder import Embedder
    from hub.services.inference import InferenceService
    from hub.services.inference.ray_gateway import RayInference


#: the job kinds the short lane of workers runs (quick merges and generations from a trained generator), so they
#: never wait behind a long training; the general workers run every kind, these included
SHORT_KINDS = (compositions.KIND, generation.GENERATE)
#: the worker lanes ``loom worker --lane`` takes
LANES = ("all", "short")


class Hub:
    """Everything a running registry needs, built from settings.

    Args:
        settings: the deployment's settings.
        migrate: apply Alembic migrations up to head first (the default on ``loom serve``).
        embedder_factory: builds the embedder from the model name (default: ``hub.search.embedder.load_embedder``).
        hf_api: an ``HfApi`` to talk to instead of one built from the ``hf_*`` settings (tests, custom clients).
    """

    def __init__(self, settings: Settings, *, migrate: bool = True,
                 embedder_factory: Callable[[str], Embedder] | None = None, hf_api: HfApi | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.resolved_database_url)
        if migrate:
            from hub.db.migrate import upgrade

            upgrade(self.engine)
        self.sessions = sessions = make_session_factory(self.engine)
        self.blobs = blobs = open_store(settings)
        self.metrics = metrics = Metrics()
        self.users = UserService(sessions, AuthThrottle(settings.auth_fail_limit, settings.auth_fail_window_s))
        self.base_models = base_models = BaseModelService(sessions, settings.weights_dir, settings.hf_api)
        self.base_files = BaseFiles(base_models, settings.data_dir)
        self.search = search = SearchService(settings, sessions, embedder_factory)
        self.adapters = adapters = AdapterService(sessions, blobs, search, metrics,
                                                  embedding_model=search.embedding_key)
        self.publisher = publisher = Publisher(sessions, blobs, search, metrics, base_models,
                                               max_upload_bytes=settings.max_upload_bytes,
                                               embedding_model=search.embedding_key)
        self.fsck = Fsck(sessions, blobs, search, search.embedding_key)
        self.sources = sources = SourceResolver(adapters, base_models)
        self.queue = JobQueue(sessions, short_kinds=SHORT_KINDS)
        self.workers = WorkerTable(sessions, self.queue)
        self.jobs = jobs = JobService(self.queue, exists=adapters.exists)
        self.generation = GenerationService(jobs, sources, adapters, base_models)
        self.compositions = CompositionService(jobs, sources, search, self.generation)
        self.routers = RouterTrainingService(jobs, sources, publisher)
        self.hf = build_hf(self, api=hf_api)
        self.handlers = job_handlers(self)
        self.ray = RayConnection(settings.ray_address)
        self.dispatcher = job_dispatcher(self) if settings.jobs == "ray" else None

    def close(self) -> None:
        """Stop the search's background re-embedding, persist the index if it changed, release DB connections."""
        try:
            self.search.close()
        finally:
            self.engine.dispose()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def job_handlers(hub: Hub) -> dict[str, Handler]:
    """Every job kind and the handler that runs it: the one table a worker is given."""
    gen = GenerationJobs(hub.users, hub.adapters, hub.publisher, hub.sources, hub.search.embed)
    return {
        compositions.KIND: CompositionJob(hub.users, hub.adapters, hub.publisher, hub.sources).run,
        generation.TRAIN_GENERATOR: gen.train_generator,
        generation.GENERATE: gen.generate,
        generation.TRANSFER: gen.transfer,
        router_training.KIND: RouterTrainingJob(hub.users, hub.adapters, hub.publisher, hub.sources,
                                                hub.search.embed).run,
        hf_resync.KIND: hub.hf.resync.run,
    }


def lane_handlers(handlers: dict[str, Handler], lane: str) -> dict[str, Handler]:
    """The handlers a worker of ``lane`` runs: every kind (``all``) or the :data:`SHORT_KINDS` (``short``).

    Raises:
        InvalidInputError: an unknown lane.
    """
    if lane not in LANES:
        raise InvalidInputError(f"lane must be one of {', '.join(LANES)}, got {lane!r}", field="lane")
    return dict(handlers) if lane == "all" else {k: h for k, h in handlers.items() if k in SHORT_KINDS}


def run_queued_job(settings_dict: dict[str, object], job_id: str, worker_name: str) -> bool:
    """Body of a job's Ray task (``LOOM_JOBS=ray``): a Hub of its own runs job ``job_id`` if it is still queued."""
    import os
    import socket

    from hub.jobs.worker import Worker
    from hub.settings import get_settings

    with Hub(get_settings(**settings_dict), migrate=False) as hub:
        name = f"{worker_name}:{socket.gethostname()}:{os.getpid()}"
        return Worker(hub.queue, hub.handlers, name=name).run_once(job_id)


def job_dispatcher(hub: Hub, task: Callable[[dict[str, object], str, str], bool] = run_queued_job) -> RayJobDispatcher:
    """The dispatcher that runs ``hub``'s queued jobs as Ray tasks (``task``: the task body)."""
    return RayJobDispatcher(hub.queue, hub.ray, task_settings(hub.settings), task)


def build_hf(hub: Hub, *, api: HfApi | None = None, policy: RetryPolicy | None = None) -> HfService:
    """The Hugging Face sync service of ``hub`` (``api``/``policy`` replace the ones built from settings)."""
    s = hub.settings
    client = HubClient(s.hf_endpoint, s.hf_api, api=api, policy=policy or DEFAULT_POLICY)
    imports = HfImports(client, hub.sessions, hub.publisher, cache_dir=s.cache_dir,
                        max_upload_bytes=s.max_upload_bytes)
    resync = HfResync(client, hub.sessions, imports)
    exporter = HfExporter(client, hub.sessions, hub.adapters, hub.blobs, cache_dir=s.cache_dir)
    webhooks = HfWebhooks(s.hf_webhook_secret, hub.jobs, resync)
    return HfService(client, imports, resync, exporter, webhooks)


def inference_service(hub: Hub, device: str | None = None) -> InferenceService | RayInference:
    """A new inference service over ``hub``'s registry (an app builds one on first use and closes it at shutdown).

    With ``LOOM_INFERENCE=ray`` it is the gateway to Ray Serve replicas of the engine, started here (joins the
    cluster, deploys the replicas; ClusterUnavailableError names LOOM_RAY_ADDRESS when it cannot).
    """
    if hub.settings.inference == "ray":
        from hub.services.inference.ray_gateway import RayInference

        gateway = RayInference(hub.settings, hub.adapters, hub.base_models, hub.metrics, hub.ray, build_replica)
        try:
            gateway.start()
        except BaseException:
            gateway.close()
            raise
        return gateway
    from hub.services.inference import InferenceService

    return InferenceService(hub.settings, hub.adapters, hub.base_models, hub.search, hub.metrics, device)


def build_replica(settings_dict: dict[str, object], device: str | None) -> tuple[Hub, InferenceService]:
    """A Ray Serve replica's own Hub and local inference service (``LOOM_INFERENCE=ray``)."""
    from hub.services.inference import InferenceService
    from hub.settings import get_settings

    hub = Hub(get_settings(**settings_dict), migrate=False)
    return hub, InferenceService(hub.settings, hub.adapters, hub.base_models, hub.search, hub.metrics, device)
