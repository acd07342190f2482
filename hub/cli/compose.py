"""``loom compose``: build a new adapter from a task description or from explicit adapters (a job)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, parse_params
from hub.cli.jobwatch import submit_job

app = typer.Typer()


@app.command()
def compose(
    task: Annotated[str | None, typer.Argument(help="What the new adapter should do (omit with --from).")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="A merge method, or auto.")] = "auto",
    sources: Annotated[list[str] | None, typer.Option("--from", help="An adapter ns/name or ns/name@VERSION; repeat.")] = None,
    weights: Annotated[list[float] | None, typer.Option("--weight", "-w", help="One per --from.")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", "-b", help="Needed with a task.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value method param.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="ns/name of the result.")] = None,
    k: Annotated[int, typer.Option("--k", help="Adapters to retrieve for a task.")] = 3,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job with a progress bar.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Build a new adapter: for a task description, or from explicit --from adapters."""
    body: dict[str, Any] = {"method": method, "params": parse_params(param or []), "k": k}
    if sources:
        body["sources"] = list(sources)
        if weights:
            body["weights"] = list(weights)
    if task:
        if not base_model:
            raise typer.BadParameter("--base-model is needed with a task (the base the new adapter is for)")
        body["task"], body["base_model"] = task, base_model
    if name:
        body["name"] = name
    submit_job("/api/v1/compositions", body, wait=wait, json_out=json_out)
