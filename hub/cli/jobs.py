"""``loom jobs [show|cancel]``: background jobs in a running hub (remote)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hub.cli import common
from hub.cli.common import JsonOpt
from hub.cli.jobwatch import queue_line, watch_job

app = typer.Typer(help="Background jobs (remote).", no_args_is_help=False, invoke_without_command=True)


@app.callback()
def jobs_list(ctx: typer.Context, status: Annotated[str | None, typer.Option("--status")] = None,
              json_out: JsonOpt = False) -> None:
    """List your jobs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with common.client() as client:
        items = client.jobs(status=status)
    if json_out:
        common.print_json(items)
        return
    common.console.print(jobs_table(items, common.console.width))


def jobs_table(items: list[dict[str, Any]], width: int) -> Table:
    """Jobs as a table whose cells never wrap: the message column only where the terminal is wide
    (``loom jobs show`` prints it in full), ``MM-DD HH:MM`` creation times."""
    from rich import box

    wide = width >= 120
    t = Table(title="jobs", box=box.SIMPLE_HEAD, pad_edge=False)
    # id, status, done and time keep their width (an 80-column terminal cut "succeeded" and "100%"); kind and
    # result share what is left (rich does not shrink a column that may not wrap: it cuts the last one off)
    keep = {"id": 12, "status": 9, "done": 4, "created (UTC)": 13}
    flex = max(width - sum(keep.values()) - 17, 12) if not wide else 48  # 3 between columns, 1 at each edge
    kind = max((len(j["kind"]) for j in items), default=4)
    result = max((len(j.get("result_name") or "") for j in items), default=6)
    if kind + result > flex:  # both cut, in proportion (a kind keeps at least a third)
        kind = max(min(kind, flex // 3), flex - result)
    give = {"kind": max(kind, 4), "result": max(min(result, flex - kind), 6)}
    for col in ("id", "kind", "status", "done", "result", "created (UTC)"):
        t.add_column(col, no_wrap=True, overflow="ellipsis", justify="right" if col == "done" else "left",
                     min_width=keep.get(col), max_width=give.get(col))
    if wide:  # what is left of the width
        rest = width - sum(keep.values()) - give["kind"] - give["result"] - 3 * 6 - 2
        t.add_column("message", no_wrap=True, overflow="ellipsis", max_width=max(rest, 8))
    for j in items:
        status = f"{j['status']} #{j['position']}" if j.get("position") else j["status"]
        cells = [j["id"][:12], j["kind"], status, f"{j['progress']:.0%}", j.get("result_name") or "",
                 (j["created_at"] or "")[5:16].replace("T", " ")]
        t.add_row(*cells, *([(j["message"] or "")[:80]] if wide else []))
    return t


@app.command("show")
def jobs_show(job_id: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
              json_out: JsonOpt = False) -> None:
    """Show one job, by its id or any unique prefix (with --follow: a live progress bar until it ends)."""
    with common.client() as client:
        job = client.job(job_id)
        if follow:
            job = watch_job(client, job, common.err_console)
    if json_out:
        common.print_json(job)
        return
    out = common.console
    out.print(f"{job['id']} {job['kind']} [bold]{job['status']}[/] {job['progress']:.0%} {job['message']}")
    if job.get("position"):
        out.print(queue_line(job))
    for line in job["log"]:
        out.print(f"  {line}")
    if job.get("result_name"):
        out.print(f"result: {job['result_name']}")
    if job.get("error"):
        out.print(f"[red]error:[/] {job['error']['message']}")


@app.command("cancel")
def jobs_cancel(job_id: str, json_out: JsonOpt = False) -> None:
    """Cancel a queued or running job (by its id or any unique prefix)."""
    with common.client() as client:
        job = client.cancel_job(job_id)
    if json_out:
        common.print_json(job)
    else:
        common.console.print(f"{job['id']}: {job['status']}")

