"""``loom base add|ls``: base models registered in a running hub (remote)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hub.cli import common
from hub.cli.common import JsonOpt

app = typer.Typer(help="Base models (remote).", no_args_is_help=True)


@app.command("add")
def base_add(
    model_id: Annotated[str, typer.Argument(help="e.g. meta-llama/Llama-3.1-8B")],
    config: Annotated[Path, typer.Option("--config", exists=True, dir_okay=False, help="Its config.json.")],
    revision: Annotated[str, typer.Option("--revision")] = "main",
    weights: Annotated[str | None, typer.Option("--weights", help="Local folder or Hugging Face id.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a base model so adapters are checked against its shapes."""
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"{config} is not JSON: {e}") from None
    with common.client() as c:
        res = c.register_base(model_id, cfg, revision=revision, weights=weights)
    if json_out:
        common.print_json(res)
    else:
        common.console.print(f"registered base model {res['id']}@{res['revision']}")


@app.command("ls")
def base_ls(json_out: JsonOpt = False) -> None:
    """List registered base models."""
    with common.client() as c:
        items = c.list_bases()
    common.print_listing(items, json_out, "base models", ("id", "revision", "model_type", "weights"),
                         lambda b: (b["id"], b["revision"], str(b["config"].get("model_type")), b["weights"] or ""))
