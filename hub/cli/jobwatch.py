"""Submitting a job request and following it: what ``compose``, ``router train``, ``generate``,
``train-generator``, ``transfer`` and ``jobs show --follow`` share."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hub.cli import common

#: Job states that do not change any more.
FINISHED = ("succeeded", "failed", "cancelled")


def watch_job(client: Any, job: dict[str, Any], console: Console) -> dict[str, Any]:
    """Follow a job with a live progress bar and its log lines until it finishes; returns the finished job."""
    seen = 0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(job["message"] or job["status"], total=1.0)
        while True:
            for line in job["log"][seen:]:
                bar.console.print(f"  {line}")
            seen = len(job["log"])
            desc = job["message"] or job["status"]
            if job.get("position"):
                desc = f"queued: {queue_line(job)}"
            bar.update(task, completed=job["progress"], description=desc)
            if job["status"] in FINISHED:
                return job
            time.sleep(0.5)
            job = client.job(job["id"])


def queue_line(job: dict[str, Any]) -> str:
    """Where a queued job stands: ``#2 in line; ahead: router_train running 41%, compose queued``."""
    ahead = ", ".join(f"{a['kind']}{' ' + a['id'][:12] if a.get('id') else ''} {a['status']}"
                      + (f" {a['progress']:.0%}" if a["status"] == "running" else "") for a in job.get("ahead") or [])
    return f"#{job['position']} in line" + (f"; ahead: {ahead}" if ahead else "; next to run")


def result_text(job: dict[str, Any]) -> str:
    """One line naming what a finished job published (an adapter, a router or a generator)."""
    r = job.get("result") or {}
    if "router" in r:
        return (f"{r['router']}@{r['version']} ({r['preset']} over {len(r['experts'])} experts; "
                f"loss {r['first_loss']:.3f} -> {r['final_loss']:.3f})")
    if "generator" in r:
        return str(r["generator"])
    return f"{r.get('adapter')}@{r.get('version')}" + (f" ({r['method']})" if r.get("method") else "")


def submit_job(path: str, body: dict[str, Any], *, wait: bool, json_out: bool) -> dict[str, Any]:
    """POST a job request, then (with ``wait``) follow it with a live progress bar and report how it ended.

    Raises:
        typer.Exit: code 1 when the job failed or was cancelled.
    """
    with common.client() as client:
        job = client.submit_job(path, body)
        if job.get("deduplicated"):
            common.err_console.print(f"same recipe as job {job['id']} ({job['status']}): reusing it")
        if wait and not json_out:
            job = watch_job(client, job, common.err_console)
        elif wait:
            job = client.wait_job(job["id"])
    if json_out:
        common.print_json(job)
    elif job["status"] == "succeeded":
        common.console.print(f"[green]published[/] {result_text(job)}")
    elif job["status"] in ("failed", "cancelled"):
        common.err_console.print(f"[red]{job['status']}:[/] {(job.get('error') or {}).get('message', '')}")
        raise typer.Exit(1)
    else:
        common.console.print(f"queued job {job['id']}; follow it with `loom jobs show {job['id']} --follow`")
    return job
