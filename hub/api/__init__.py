"""Loom's REST API (FastAPI). Build it with :func:`create_app`; there is no module-level app."""

from hub.api.app import create_app

__all__ = ["create_app"]
