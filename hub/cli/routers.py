"""``loom router train|presets``: routers, gates trained over several adapters (remote; training is a job)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli import common
from hub.cli.common import JsonOpt, parse_params
from hub.cli.jobwatch import submit_job

app = typer.Typer(help="Routers: gates over several adapters (remote).", no_args_is_help=True)


@app.command("train")
def train(
    preset: Annotated[str, typer.Option("--preset", help="A trainable preset (see `loom router presets`).")],
    experts: Annotated[list[str], typer.Option("--expert", "-e", help="An adapter ns/name[@VERSION]; repeat, "
                                                                   "in gate order.")],
    name: Annotated[str, typer.Option("--name", help="ns/name of the router to publish.")],
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps.")] = 100,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value preset config.")] = None,
    setting: Annotated[list[str] | None, typer.Option("--train", "-t", help="key=value training setting "
                                                                           "(lr, batch_size, seed ...).")] = None,
    description: Annotated[str | None, typer.Option("--description", help="The router's description.")] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="hub: the settings that route on hub adapters (default); "
                                        "paper: the preset's own defaults. --param/--train override either.")]
    = "hub",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job with a progress bar.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a router's gates over registered adapters (on their sample data), as a job."""
    body: dict[str, Any] = {"preset": preset, "experts": list(experts), "name": name, "steps": steps, "recipe": recipe,
                            "params": parse_params(param or []), "train": parse_params(setting or [], "--train")}
    if description:
        body["description"] = description
    submit_job("/api/v1/routers", body, wait=wait, json_out=json_out)


@app.command("presets")
def list_presets(json_out: JsonOpt = False) -> None:
    """List the router presets and their config fields."""
    with common.client() as client:
        items = client.router_presets()

    def row(p: dict[str, Any]) -> tuple[str, ...]:
        cfg = ", ".join(f"{k}={v}" for k, v in p["config"].items())
        return p["name"], p["granularity"], "yes" if p["trainable"] else "no", cfg, p.get("paper") or ""

    common.print_listing(items, json_out, "router presets", ("name", "granularity", "trainable", "config", "paper"),
                         row, overflow="fold")
