"""``loom``: the command line of Loom (typer + rich).

Remote commands talk to a running hub through :mod:`hub.client` (``--server`` / ``LOOM_SERVER_URL``,
``--token`` / ``LOOM_TOKEN``): ``publish``, ``search``, ``pull``, ``ls``, ``show``, ``rm``, ``base add|ls``.
Local commands open the hub's database and data directory directly (``LOOM_DATA_DIR``,
``LOOM_DATABASE_URL``): ``serve``, ``db upgrade|downgrade|current``, ``reindex``, ``fsck``,
``token create``. Every listing takes ``--json`` for scripts.

Adding commands (``demo``, ``eval``, ``compose``, ``jobs``, ``router``, ``hf``): write a module with
``def register(app: typer.Typer) -> None`` that adds a command or ``app.add_typer(sub, name=...)``,
and add ``"module.path:register"`` to :data:`PLUGINS`. Keep heavy imports inside the command
functions so ``loom --help`` stays fast (no torch at import).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from hub.core.errors import LoomError

#: "module:function" entries called with the typer app to add more commands (see module docstring).
PLUGINS: list[str] = [
    "hub.cli_jobs:register", "hub.cli_hf:register", "hub.cli_infer:register", "hub.cli_router:register",
    "hub.cli_generation:register", "hub.cli_testbed:register",
]

app = typer.Typer(name="loom", help="Loom: a self-hosted hub for LoRA adapters.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database migrations (local).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (local).", no_args_is_help=True)
base_app = typer.Typer(help="Base models (remote).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(base_app, name="base")

console = Console()
err_console = Console(stderr=True)
_state: dict[str, Any] = {}
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.callback()
def _global(
    server: Annotated[str | None, typer.Option("--server", envvar="LOOM_SERVER_URL", help="Hub URL.")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="LOOM_TOKEN", help="API token.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="LOOM_DATA_DIR",
                                                  help="Data directory of local commands.")] = None,
) -> None:
    _state.update(server=server, token=token, data_dir=data_dir)


def _settings():
    from hub.settings import get_settings

    overrides: dict[str, Any] = {}
    if _state.get("data_dir") is not None:
        overrides["data_dir"] = _state["data_dir"]
    return get_settings(**overrides)


def _client():
    from hub.client import LoomClient

    url = _state.get("server") or _settings().server_url
    return LoomClient(url, _state.get("token"))


def _local_hub(migrate: bool = True):
    from hub.services.hub import Hub

    return Hub(_settings(), migrate=migrate)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))  # plain stdout: no colour codes or wrapping


def _bar(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console,
                    transient=True)


def _adapter_table(rows: list[dict[str, Any]], title: str | None = None, scores: list[float] | None = None) -> Table:
    t = Table(title=title)
    if scores is not None:
        t.add_column("score", justify="right")
    t.add_column("name", no_wrap=True)
    for col in ("ver", "rank", "base model", "tags", "dl"):
        t.add_column(col, no_wrap=True, max_width=28)
    t.add_column("description", overflow="fold", ratio=1, min_width=20)
    for i, a in enumerate(rows):
        name = a["id"] + (" (private)" if a["visibility"] == "private" else "")
        cells = [name, str(a["latest_version"]), str(a.get("rank") or ""), a.get("base_model") or "",
                 ", ".join(a["tags"]), str(a["downloads"]), (a["description"] or "")[:120]]
        t.add_row(*([f"{scores[i]:.3f}"] if scores is not None else []), *cells)
    return t


# -- remote commands ---------------------------------------------------------------------------
@app.command()
def publish(
    folder: Annotated[Path, typer.Argument(help="A PEFT adapter folder.", exists=True, file_okay=False)],
    name: Annotated[str, typer.Option("--name", help="namespace/name")],
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Repeatable.")] = None,
    license: Annotated[str | None, typer.Option("--license")] = None,
    private: Annotated[bool, typer.Option("--private", help="Visible to you only.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Upload a PEFT folder as a new adapter (or a new version of it)."""
    total = sum((folder / n).stat().st_size for n in ("adapter_config.json", "adapter_model.safetensors",
                                                       "README.md", "samples.jsonl") if (folder / n).is_file())
    with _client() as c, _bar("upload") as bar:
        task = bar.add_task("upload", total=total)
        res = c.publish(folder, name, description=description, tags=tag, license=license,
                        private=True if private else None, progress=lambda n: bar.advance(task, n))
    if json_out:
        _print_json(res)
        return
    v = res["version"]
    verb = "published" if res["created"] else "unchanged (identical content):"
    console.print(f"{verb} [bold]{res['adapter']['id']}@{v['number']}[/] rank {v['rank']} "
                  f"on {v['base_model']} sha256 {v['sha256'][:12]}")
    for w in res.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Describe the task.")],
    k: Annotated[int, typer.Option("--k", "-k")] = 10,
    base_model: Annotated[str | None, typer.Option("--base-model")] = None,
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    license: Annotated[str | None, typer.Option("--license")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    min_rank: Annotated[int | None, typer.Option("--min-rank")] = None,
    max_rank: Annotated[int | None, typer.Option("--max-rank")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Find adapters by describing what they should do."""
    with _client() as c:
        res = c.search(query, k, base_model=base_model, tag=tag, license=license, owner=owner, min_rank=min_rank,
                       max_rank=max_rank)
    if json_out:
        _print_json(res)
        return
    hits = res["results"]
    console.print(_adapter_table([h["adapter"] for h in hits], f"results for {query!r}", [h["score"] for h in hits]))


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="namespace/name[@version]")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the PEFT files into.")],
    json_out: JsonOpt = False,
) -> None:
    """Download an adapter version into a folder that peft loads."""
    with _client() as c, _bar("download") as bar:
        task = bar.add_task("download", total=None)
        out = c.pull(ref, dest, progress=lambda n: bar.advance(task, n),
                     on_total=lambda t: bar.update(task, total=t))
    files = sorted(p.name for p in out.iterdir())
    if json_out:
        _print_json({"ref": ref, "dest": str(out), "files": files})
    else:
        console.print(f"pulled {ref} into {out}: {', '.join(files)}")


@app.command("ls")
def ls(
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """List adapters."""
    with _client() as c:
        res = c.list(tag=tag, base_model=base_model, owner=owner, limit=limit, offset=offset)
    if json_out:
        _print_json(res)
    else:
        console.print(_adapter_table(res["items"], f"{res['total']} adapter(s)"))


@app.command()
def show(ref: Annotated[str, typer.Argument(help="namespace/name")], json_out: JsonOpt = False) -> None:
    """Show an adapter, its versions and lineage."""
    with _client() as c:
        detail = c.get(ref)
        versions = c.versions(ref)
    if json_out:
        _print_json({**detail, "versions": versions})
        return
    a = detail["adapter"]
    console.print(f"[bold]{a['id']}[/] ({a['visibility']}, owner {a['owner']}, {a['downloads']} downloads)")
    console.print(a["description"] or "(no description)")
    console.print(f"tags: {', '.join(a['tags']) or '-'}   license: {a['license'] or '-'}   base: {a['base_model']}")
    t = Table(title="versions")
    for col in ("ver", "rank", "targets", "size", "sha256", "source", "created"):
        t.add_column(col)
    for v in versions:
        t.add_row(str(v["number"]), str(v["rank"]), ",".join(v["target_modules"]), str(v["size"]),
                  v["sha256"][:12], v["source"], str(v["created_at"])[:19])
    console.print(t)
    for e in detail.get("parents", []):
        console.print(f"parent: {e['version']} via {e['method']} (weight {e['weight']})")


@app.command()
def rm(ref: Annotated[str, typer.Argument(help="namespace/name")],
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete an adapter and all its versions (owner only)."""
    if not yes:
        typer.confirm(f"delete {ref} and all its versions?", abort=True)
    with _client() as c:
        c.delete(ref)
    console.print(f"deleted {ref}")


@base_app.command("add")
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
    with _client() as c:
        res = c.register_base(model_id, cfg, revision=revision, weights=weights)
    if json_out:
        _print_json(res)
    else:
        console.print(f"registered base model {res['id']}@{res['revision']}")


@base_app.command("ls")
def base_ls(json_out: JsonOpt = False) -> None:
    """List registered base models."""
    with _client() as c:
        items = c.list_bases()
    if json_out:
        _print_json(items)
        return
    t = Table(title="base models")
    for col in ("id", "revision", "model_type", "weights"):
        t.add_column(col)
    for b in items:
        t.add_row(b["id"], b["revision"], str(b["config"].get("model_type")), b["weights"] or "")
    console.print(t)


# -- local commands ----------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not apply migrations on start.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", help="Job worker processes (LOOM_WORKERS).")] = None,
) -> None:
    """Run the hub (API, docs at /docs) with uvicorn and its job workers; migrations are applied on start."""
    import uvicorn

    from hub.api import create_app
    from hub.jobs.supervisor import start_workers, stop_workers

    settings = _settings()
    application = create_app(settings, migrate=not no_migrate)
    procs = start_workers(settings.workers if workers is None else workers,
                          env={"LOOM_DATA_DIR": str(settings.data_dir)})
    try:
        uvicorn.run(application, host=host or settings.host, port=port or settings.port, log_level="info")
    finally:
        stop_workers(procs)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default head)."""
    from hub.db import make_engine
    from hub.db.migrate import current, upgrade

    eng = make_engine(_settings().resolved_database_url)
    try:
        upgrade(eng, revision)
        console.print(f"database at {current(eng)}")
    finally:
        eng.dispose()


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1 or base")] = "-1") -> None:
    """Revert migrations down to REVISION."""
    from hub.db import make_engine
    from hub.db.migrate import current, downgrade

    eng = make_engine(_settings().resolved_database_url)
    try:
        downgrade(eng, revision)
        console.print(f"database at {current(eng) or 'base (empty)'}")
    finally:
        eng.dispose()


@db_app.command("current")
def db_current(json_out: JsonOpt = False) -> None:
    """Show the database's migration revision and the newest one shipped."""
    from hub.db import make_engine
    from hub.db.migrate import current, head

    eng = make_engine(_settings().resolved_database_url)
    try:
        cur, hd = current(eng), head()
    finally:
        eng.dispose()
    if json_out:
        _print_json({"current": cur, "head": hd})
    else:
        console.print(f"current: {cur or 'none'}  head: {hd}" + ("" if cur == hd else "  (run `loom db upgrade`)"))


@token_app.command("create")
def token_create(user: Annotated[str, typer.Argument(help="User name (created if needed).")],
                 label: Annotated[str | None, typer.Option("--label")] = None, json_out: JsonOpt = False) -> None:
    """Create an API token for USER; it is printed once and only its hash is stored."""
    with _local_hub() as hub:
        u, token = hub.users.create_token(user, label)
    if json_out:
        _print_json({"user": u.name, "token": token})
    else:
        console.print(f"token for {u.name} (shown once; export LOOM_TOKEN=...):")
        print(token)


@app.command()
def reindex(json_out: JsonOpt = False) -> None:
    """Re-embed every adapter with the configured model and rebuild the search index."""
    with _local_hub() as hub:
        progress = Progress(TextColumn("reindex"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            console=err_console, transient=True)
        with progress:
            task = progress.add_task("reindex", total=None)
            n = hub.search.reindex(progress=lambda done, total: progress.update(task, completed=done, total=total))
    if json_out:
        _print_json({"indexed": n})
    else:
        console.print(f"re-embedded and indexed {n} adapter(s)")


@app.command()
def fsck(repair: Annotated[bool, typer.Option("--repair", help="Fix what is found.")] = False,
         grace: Annotated[float, typer.Option("--grace", help="Keep orphan blobs younger than this (s).")] = 3600.0,
         json_out: JsonOpt = False) -> None:
    """Check the DB against the blob store and the search index; --repair fixes mismatches."""
    from hub.services.fsck import fsck as run_fsck

    with _local_hub() as hub:
        rep = run_fsck(hub, repair=repair, orphan_grace_s=grace)
    if json_out:
        _print_json(rep.to_dict())
    else:
        for m in rep.missing_blobs:
            console.print(f"[red]missing blob[/] {m['key'][:12]} ({m['file']} of {m['version']})")
        for k in rep.orphan_blobs:
            console.print(f"[yellow]orphan blob[/] {k}")
        if rep.young_orphans:
            console.print(f"{len(rep.young_orphans)} recent unreferenced blob(s) kept (publishes in flight?)")
        for n in rep.stale_temp_files:
            console.print(f"[yellow]stale upload temp file[/] {n}")
        for n in rep.missing_embeddings:
            console.print(f"[yellow]no embedding[/] {n}")
        if rep.stale_index:
            console.print("[yellow]search index is stale[/]")
        for r in rep.repaired:
            console.print(f"[green]repaired:[/] {r}")
        console.print("ok" if rep.ok else ("problems found" + ("" if repair else "; run `loom fsck --repair`")))
    if not rep.ok and not repair:
        raise typer.Exit(1)


def _load_plugins() -> None:
    for spec in PLUGINS:
        module, _, attr = spec.partition(":")
        getattr(importlib.import_module(module), attr or "register")(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: domain errors become one line on stderr and exit code 1."""
    import httpx

    _load_plugins()
    try:
        rc = app(args=argv, standalone_mode=False)  # returns the code of a typer.Exit
    except LoomError as e:
        err_console.print(f"[red]error ({e.code}):[/] {e.message}")
        return 1
    except httpx.TransportError as e:
        url = _state.get("server") or "the hub"
        err_console.print(f"[red]error:[/] cannot reach {url} ({e}); is `loom serve` running?")
        return 1
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            return e.exit_code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
