"""Hugging Face Hub sync of one registry: imports, re-syncs, export and webhooks over one Hub client.

:class:`HfService` joins the four parts (each in its own module) and offers their operations to the API
and the CLI: :class:`~hub.services.hf_imports.HfImports` (one repo or a search),
:class:`~hub.services.hf_resync.HfResync` (follow imported repos; the ``hf_sync`` job),
:class:`~hub.services.hf_export.HfExporter` (push a version with a generated card) and
:class:`~hub.services.hf_webhooks.HfWebhooks` (a Hub webhook queues a re-sync).
"""

from __future__ import annotations

from hub.services.hf_client import HubClient
from hub.services.hf_export import ExportResult, HfExporter
from hub.services.hf_imports import BulkOutcome, HfImports, ImportResult, clean_tags, default_name
from hub.services.hf_resync import HfResync, SyncReport, Tracker
from hub.services.hf_webhooks import HfWebhooks, WebhookOutcome

__all__ = ["BulkOutcome", "ExportResult", "HfService", "ImportResult", "SyncReport", "Tracker", "WebhookOutcome",
           "clean_tags", "default_name"]


class HfService:
    """The Hub sync operations of one registry.

    Args:
        client: the Hub client. imports / resync / exporter / webhooks: the parts (see the module docstring).
    """

    def __init__(self, client: HubClient, imports: HfImports, resync: HfResync, exporter: HfExporter,
                 webhooks: HfWebhooks) -> None:
        self.client, self.imports, self.resync, self.exporter, self.webhooks = client, imports, resync, exporter, webhooks
        # the operations, by the names the API, the CLI and the docs use
        self.import_repo, self.search, self.import_search = imports.import_repo, imports.search, imports.import_search
        self.trackers, self.sync = resync.trackers, resync.sync
        self.export, self.exports = exporter.export, exporter.exports
        self.handle_webhook = webhooks.handle_webhook
