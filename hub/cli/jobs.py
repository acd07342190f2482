"""``loom jobs [show|cancel]``: background jobs in a running hub (remote)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli import common
from hub.cli.common import JsonOpt
from hub.cli.jobwatch import watch_job

app = typer.Typer(help="Background jobs (remote).", no_args_is_help=False, invoke_without_command=True)


@app.callback()
def jobs_list(ctx: typer.Context, status: Annotated[str | None, typer.Option("--status")] = None,
              json_out: JsonOpt = False) -> None:
    """List your jobs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with common.client() as client:
        items = client.jobs(status=status)

    def row(j: dict[str, Any]) -> tuple[str, ...]:
        res = j.get("result") or {}
        return (j["id"][:12], j["kind"], j["status"], f"{j['progress']:.0%}", (j["message"] or "")[:60],
                f"{res.get('adapter', '')}@{res.get('version', '')}" if res else "", j["created_at"][:19])

    common.print_listing(items, json_out, "jobs", ("id", "kind", "status", "progress", "message", "result", "created"),
                         row, overflow="fold")


@app.command("show")
def jobs_show(job_id: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
              json_out: JsonOpt = False) -> None:
    """Show one job (with --follow: a live progress bar until it ends)."""
    with common.client() as client:
        job = client.job(job_id)
        if follow:
            job = watch_job(client, job, common.err_console)
    if json_out:
        common.print_json(job)
        return
    out = common.console
    out.print(f"{job['id']} {job['kind']} [bold]{job['status']}[/] {job['progress']:.0%} {job['message']}")
    for line in job["log"]:
        out.print(f"  {line}")
    if job.get("error"):
        out.print(f"[red]error:[/] {job['error']['message']}")


@app.command("cancel")
def jobs_cancel(job_id: str, json_out: JsonOpt = False) -> None:
    """Cancel a queued or running job."""
    with common.client() as client:
        job = client.cancel_job(job_id)
    if json_out:
        common.print_json(job)
    else:
        common.console.print(f"{job['id']}: {job['status']}")
