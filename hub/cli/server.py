"""``loom serve``, ``loom worker`` and ``loom serve-inference``: the processes of a deployment (local:
``LOOM_DATA_DIR`` / ``LOOM_DATABASE_URL``).

``serve-inference`` runs only the OpenAI-compatible inference API, for a GPU host: the registry
database and blob store are the hub's own; base models are served from their registered local folders.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli import common

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not apply migrations on start.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", help="Job worker processes (LOOM_WORKERS).")] = None,
) -> None:
    """Run the hub (API, docs at /docs) with uvicorn and its job workers (supervised: a dead worker is replaced and
    its running jobs go back to the queue); migrations are applied on start."""
    import uvicorn

    from hub.api import create_app
    from hub.jobs.supervisor import WorkerPool

    settings = common.settings()
    application = create_app(settings, migrate=not no_migrate)
    n = settings.workers if workers is None else workers
    pool = WorkerPool(application.state.hub.workers, n, settings.short_workers if n > 0 else 0,
                      env={"LOOM_DATA_DIR": str(settings.data_dir)})
    application.state.worker_pool = pool.start()
    try:
        uvicorn.run(application, host=host or settings.host, port=port or settings.port, log_level="info")
    finally:
        pool.stop()


@app.command()
def worker(poll: Annotated[float, typer.Option("--poll", help="Seconds between queue polls.")] = 0.5,
           lane: Annotated[str, typer.Option("--lane", help="all: every job kind; short: only the short kinds "
                                             "(merges), which then never wait behind a long training.")] = "all",
           parent_pid: Annotated[int | None, typer.Option("--parent-pid", hidden=True,
                                                          help="Exit when this process is gone.")] = None) -> None:
    """Run jobs from the queue (local: uses LOOM_DATA_DIR / LOOM_DATABASE_URL)."""
    import logging

    from hub.jobs.worker import Worker
    from hub.services.container import LANES, lane_handlers

    if lane not in LANES:
        raise typer.BadParameter(f"--lane must be one of {', '.join(LANES)}, got {lane!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    with common.local_hub(migrate=False) as hub:
        common.err_console.print(f"worker started ({lane} lane); Ctrl-C stops it")
        try:
            Worker(hub.queue, lane_handlers(hub.handlers, lane), lane=lane,
                   table=hub.workers).run_forever(poll, parent_pid=parent_pid)
        except KeyboardInterrupt:
            pass


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

    from hub.api.routes.openai import create_inference_app

    settings = common.settings()
    if device not in (None, "cpu", "cuda"):
        raise typer.BadParameter(f"--device must be cpu or cuda, got {device!r}")
    application = create_inference_app(settings, migrate=not no_migrate, preload=preload, pin=pin, device=device)
    uvicorn.run(application, host=host or settings.host, port=port or settings.port, log_level="info")
