"""The service container: one object holding the engine, sessions, blob store, search and services.

``create_app`` and the CLI's local commands build a :class:`Hub` from :class:`~hub.settings.Settings`;
nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.db import make_engine, make_session_factory
from hub.settings import Settings
from hub.storage import open_store

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.embedder import Embedder


class Hub:
    """Everything a running registry needs, built from settings.

    Args:
        settings: the deployment's settings.
        migrate: apply Alembic migrations up to head first (the default on ``loom serve``).
        embedder_factory: builds the embedder from the model name (default: ``hub.search.embedder.load_embedder``).
    """

    def __init__(self, settings: Settings, *, migrate: bool = True,
                 embedder_factory: Callable[[str], Embedder] | None = None) -> None:
        from hub.services.adapters import AdapterService
        from hub.services.base_models import BaseModelService
        from hub.services.metrics import Metrics
        from hub.services.search import SearchService
        from hub.services.users import UserService

        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.resolved_database_url)
        if migrate:
            from hub.db.migrate import upgrade

            upgrade(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.blobs = open_store(settings)
        self.metrics = Metrics()
        self.users = UserService(self.sessions)
        self.base_models = BaseModelService(self.sessions)
        self.search = SearchService(settings, self.sessions, embedder_factory)
        self.adapters = AdapterService(self)

    def close(self) -> None:
        """Persist the index if it changed and release DB connections."""
        try:
            self.search.save()
        finally:
            self.engine.dispose()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
