"""``loom train-generator``, ``loom generate`` and ``loom transfer``: adapters made by generators and
Trans-LoRA (remote; each is a job).

Thin callers of the HTTP API (``/api/v1/generators``, ``/generations``, ``/transfers``) that follow
the queued job with the same progress bar as ``loom compose``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, parse_params
from hub.cli.jobwatch import submit_job

app = typer.Typer()


@app.command("train-generator")
def train_generator(
    name: Annotated[str, typer.Argument(help="ns/name of the generator artifact.")],
    base_model: Annotated[str, typer.Option("--base-model", "-b", help="Train on this base's adapters.")],
    method: Annotated[str, typer.Option("--method", "-m", help="sg_lora or icm_lora.")] = "sg_lora",
    sources: Annotated[list[str] | None, typer.Option("--from", help="Adapters to train on; repeat.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Train an SG-LoRA / ICM-LoRA generator on the registry's adapters of a base model."""
    body = {"name": name, "base_model": base_model, "method": method, "sources": list(sources or []),
            "params": parse_params(param or [])}
    submit_job("/api/v1/generators", body, wait=wait, json_out=json_out)


@app.command("generate")
def generate(
    task: Annotated[str, typer.Argument(help="What the new adapter should do, in words.")],
    generator: Annotated[str, typer.Option("--generator", "-g", help="ns/name[@version] of a generator.")],
    sample: Annotated[list[str] | None, typer.Option("--sample", help="An example prompt; repeat.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    name: Annotated[str | None, typer.Option("--name", help="ns/name of the result.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Generate an adapter from a task description with a trained generator."""
    body: dict[str, Any] = {"generator": generator, "task": task, "samples": list(sample or []), "seed": seed}
    if name:
        body["name"] = name
    submit_job("/api/v1/generations", body, wait=wait, json_out=json_out)


@app.command("transfer")
def transfer(
    source: Annotated[str, typer.Argument(help="ns/name[@version] of the adapter to move.")],
    target_base: Annotated[str, typer.Option("--to", help="Target base model id (registered, with weights).")],
    name: Annotated[str | None, typer.Option("--name", help="ns/name of the result.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value TransConfig field.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Move an adapter to another base model with Trans-LoRA."""
    body: dict[str, Any] = {"source": source, "target_base": target_base, "params": parse_params(param or [])}
    if name:
        body["name"] = name
    submit_job("/api/v1/transfers", body, wait=wait, json_out=json_out)
