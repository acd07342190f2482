"""``loom compose``, ``loom jobs`` and ``loom worker`` (registered into :mod:`hub.cli` as a plugin)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub import cli  # hub.cli loads this module as a plugin, after it is fully imported
from hub.cli import JsonOpt

FINISHED = ("succeeded", "failed", "cancelled")


def parse_params(items: list[str]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param must be key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def watch_job(client: Any, job: dict[str, Any], console: Any) -> dict[str, Any]:
    """Follow a job with a live progress bar and its log lines until it finishes."""
    seen = 0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(job["message"] or job["status"], total=1.0)
        while True:
            for line in job["log"][seen:]:
                bar.console.print(f"  {line}")
            seen = len(job["log"])
            bar.update(task, completed=job["progress"], description=job["message"] or job["status"])
            if job["status"] in FINISHED:
                return job
            time.sleep(0.5)
            job = client.job(job["id"])


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
    with cli._client() as client:
        job = client.submit_job(path, body)
        if job.get("deduplicated"):
            cli.err_console.print(f"same recipe as job {job['id']} ({job['status']}): reusing it")
        if wait and not json_out:
            job = watch_job(client, job, cli.err_console)
        elif wait:
            job = client.wait_job(job["id"])
    if json_out:
        cli._print_json(job)
    elif job["status"] == "succeeded":
        cli.console.print(f"[green]published[/] {result_text(job)}")
    elif job["status"] in ("failed", "cancelled"):
        cli.err_console.print(f"[red]{job['status']}:[/] {(job.get('error') or {}).get('message', '')}")
        raise typer.Exit(1)
    else:
        cli.console.print(f"queued job {job['id']}; follow it with `loom jobs show {job['id']} --follow`")
    return job


def register(app: typer.Typer) -> None:
    """Add ``compose``, ``jobs`` and ``worker`` to the ``loom`` app."""
    jobs_app = typer.Typer(help="Background jobs (remote).", no_args_is_help=False, invoke_without_command=True)
    app.add_typer(jobs_app, name="jobs")

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
            body["task"], body["base_model"] = task, base_model
        if name:
            body["name"] = name
        submit_job("/api/v1/compositions", body, wait=wait, json_out=json_out)

    @jobs_app.callback()
    def jobs_list(ctx: typer.Context, status: Annotated[str | None, typer.Option("--status")] = None,
                  json_out: JsonOpt = False) -> None:
        """List your jobs, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        with cli._client() as client:
            items = client.jobs(status=status)
        if json_out:
            cli._print_json(items)
            return
        t = Table(title="jobs")
        for col in ("id", "kind", "status", "progress", "message", "result", "created"):
            t.add_column(col, overflow="fold")
        for j in items:
            res = j.get("result") or {}
            t.add_row(j["id"][:12], j["kind"], j["status"], f"{j['progress']:.0%}", (j["message"] or "")[:60],
                      f"{res.get('adapter', '')}@{res.get('version', '')}" if res else "", j["created_at"][:19])
        cli.console.print(t)

    @jobs_app.command("show")
    def jobs_show(job_id: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
                  json_out: JsonOpt = False) -> None:
        """Show one job (with --follow: a live progress bar until it ends)."""
        with cli._client() as client:
            job = client.job(job_id)
            if follow:
                job = watch_job(client, job, cli.err_console)
        if json_out:
            cli._print_json(job)
            return
        cli.console.print(f"{job['id']} {job['kind']} [bold]{job['status']}[/] {job['progress']:.0%} {job['message']}")
        for line in job["log"]:
            cli.console.print(f"  {line}")
        if job.get("error"):
            cli.console.print(f"[red]error:[/] {job['error']['message']}")

    @jobs_app.command("cancel")
    def jobs_cancel(job_id: str, json_out: JsonOpt = False) -> None:
        """Cancel a queued or running job."""
        with cli._client() as client:
            job = client.cancel_job(job_id)
        cli._print_json(job) if json_out else cli.console.print(f"{job['id']}: {job['status']}")

    @app.command()
    def worker(poll: Annotated[float, typer.Option("--poll", help="Seconds between queue polls.")] = 0.5,
               parent_pid: Annotated[int | None, typer.Option("--parent-pid", hidden=True,
                                                              help="Exit when this process is gone.")] = None) -> None:
        """Run jobs from the queue (local: uses LOOM_DATA_DIR / LOOM_DATABASE_URL)."""
        import logging

        from hub.jobs.worker import Worker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
        with cli._local_hub(migrate=False) as hub:
            cli.err_console.print("worker started; Ctrl-C stops it")
            try:
                Worker(hub.queue, hub.handlers).run_forever(poll, parent_pid=parent_pid)
            except KeyboardInterrupt:
                pass
