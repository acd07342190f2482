"""``loom base add|ls|pull``: base models registered in a running hub (remote)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli import common
from hub.cli.common import JsonOpt

app = typer.Typer(help="Base models (remote).", no_args_is_help=True)


@app.command("add")
def base_add(
    model_id: Annotated[str, typer.Argument(help="e.g. meta-llama/Llama-3.1-8B")],
    config: Annotated[Path | None, typer.Option("--config", exists=True, dir_okay=False,
                                                help="Its config.json (default: the weights' own).")] = None,
    revision: Annotated[str | None, typer.Option(
        "--revision", help="Default: the commit sha of Hugging Face weights, else main.")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="A local folder, a .gguf file (on the hub's machine) or a Hugging Face id "
                          "org/name[@revision] (downloaded once, pinned to its commit sha).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a base model so adapters are checked against its shapes and it can be served."""
    cfg = None
    if config is not None:
        try:
            cfg = json.loads(config.read_text())
        except json.JSONDecodeError as e:
            raise typer.BadParameter(f"{config} is not JSON: {e}") from None
    with common.client() as c:
        res = c.register_base(model_id, cfg, revision=revision, weights=weights)
    if json_out:
        common.print_json(res)
    else:
        common.console.print(f"registered base model {res['id']}@{res['revision']}" + source_text(res.get("source")))


def source_text(source: dict[str, Any] | None) -> str:
    """Where a base's weights came from, as the listings show it (nothing for a plain folder)."""
    if not source or source.get("kind") == "folder":
        return ""
    if source.get("kind") == "hf":
        return f" (Hugging Face {source['repo_id']} at commit {source['sha']})"
    return f" (dequantized from {Path(source['file']).name}, sha256 {source['sha256'][:12]})"


@app.command("ls")
def base_ls(json_out: JsonOpt = False) -> None:
    """List registered base models."""
    with common.client() as c:
        items = c.list_bases()
    common.print_listing(items, json_out, "base models", ("id", "revision", "model_type", "weights"),
                         lambda b: (b["id"], b["revision"], str(b["config"].get("model_type")),
                                    (b["weights"] or "") + source_text(b.get("source"))))


@app.command("pull")
def base_pull(
    model_id: Annotated[str, typer.Argument(help="A registered base whose weights the hub holds.")],
    dest: Annotated[Path, typer.Argument(help="The folder to write (AutoModelForCausalLM.from_pretrained loads it).")],
    revision: Annotated[str | None, typer.Option("--revision", help="Default: the latest.")] = None,
) -> None:
    """Download a base model's weights, config and tokenizer from the hub into DEST."""
    with common.client() as c, common.transfer_bar(f"pull {model_id}") as bar:
        task = bar.add_task("pull", total=None)
        out = c.pull_base(model_id, dest, revision=revision, progress=lambda n: bar.advance(task, n),
                          on_total=lambda total: bar.update(task, total=total))
    common.console.print(f"pulled base model {model_id} into {out}")
