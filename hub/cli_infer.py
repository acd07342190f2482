"""``loom serve-inference``: only the OpenAI-compatible inference API, for a GPU host (a :mod:`hub.cli` plugin).

Add ``"hub.cli_infer:register"`` to ``hub.cli.PLUGINS``. The registry database and blob store are the
hub's own (``LOOM_DATABASE_URL``, ``LOOM_DATA_DIR``); base models are served from their registered
local folders.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``serve-inference`` to the ``loom`` app."""

    @app.command("serve-inference")
    def serve_inference(
        host: Annotated[str | None, typer.Option("--host")] = None,
        port: Annotated[int | None, typer.Option("--port")] = None,
        preload: Annotated[list[str] | None, typer.Option("--preload", help="Base model id to load at start.")] = None,
        pin: Annotated[list[str] | None, typer.Option("--pin", help="Adapter ns/name[@v] never evicted.")] = None,
        device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if any).")] = None,
        no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not apply migrations on start.")] = False,
    ) -> None:
        """Serve /v1/completions, /v1/chat/completions and /v1/models with uvicorn (no registry API)."""
        import uvicorn

        from hub import cli
        from hub.api.routes.openai import create_inference_app

        settings = cli._settings()
        if device not in (None, "cpu", "cuda"):
            raise typer.BadParameter(f"--device must be cpu or cuda, got {device!r}")
        application = create_inference_app(settings, migrate=not no_migrate, preload=preload, pin=pin,
                                           device=device)
        uvicorn.run(application, host=host or settings.host, port=port or settings.port, log_level="info")
