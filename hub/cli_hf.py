"""``loom hf ...``: import from, re-sync with and export to the Hugging Face Hub, through a running hub.

Like the other remote commands, these call the hub's REST API (``--server`` / ``LOOM_SERVER_URL``,
``--token`` / ``LOOM_TOKEN``); the hub holds the Hugging Face token (``LOOM_HF_TOKEN``), so it never
passes through the CLI. Register with ``"hub.cli_hf:register"`` in :data:`hub.cli.PLUGINS`.

    loom hf pull org/repo[@rev] [--name ns/name] [--private]
    loom hf pull --search Q --author A --base-model B --limit N
    loom hf sync [org/repo ...]
    loom hf push ns/name[@v] org/repo [--private]
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

hf_app = typer.Typer(help="Hugging Face Hub: import (pull), re-sync and export (push) adapters.",
                     no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``loom hf`` to the CLI (idempotent: ``hub.cli.main`` loads plugins on every call)."""
    if not any(g.typer_instance is hf_app for g in app.registered_groups):
        app.add_typer(hf_app, name="hf")


def _client() -> Any:
    from hub.cli import _settings, _state
    from hub.client_hf import HfClient

    url = _state.get("server") or _settings().server_url
    return HfClient(url, _state.get("token"))


def _line(item: dict[str, Any]) -> str:
    if item["status"] == "failed":
        return f"[red]failed[/] {item['repo_id']}: {item['error']['message']}"
    v, a = item["version"], item["adapter"]
    verb = "imported" if item["status"] == "imported" else "already imported:"
    return f"{verb} {item['repo_id']}@{item['sha'][:12]} -> [bold]{a['id']}@{v['number']}[/] rank {v['rank']}"


@hf_app.command("pull")
def pull(
    ref: Annotated[str | None, typer.Argument(help="org/repo[@revision] (omit with --search/--author)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Loom ns/name (default hf-<org>/<repo>)")] = None,
    private: Annotated[bool, typer.Option("--private", help="Visible to you only.")] = False,
    search: Annotated[str | None, typer.Option("--search", help="Bulk: repos whose id contains this.")] = None,
    author: Annotated[str | None, typer.Option("--author", help="Bulk: a Hub user or organisation.")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="Bulk: adapters of this base.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Bulk: at most this many repos.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Import a LoRA adapter from the Hub (pinned to a commit sha), or every PEFT adapter a search finds."""
    from hub.cli import _print_json, console, err_console
    from hub.core.errors import InvalidInputError, LoomError

    bulk = search is not None or author is not None or base_model is not None
    if (ref is None) == (not bulk):
        raise InvalidInputError("give either org/repo[@rev] or --search/--author/--base-model")
    visibility = "private" if private else None
    with _client() as c:
        if ref is not None:
            items = c.hf_import(ref, name=name, visibility=visibility)["items"]
        else:
            if name is not None:
                raise InvalidInputError("--name applies to one repo, not to a search")
            refs = c.hf_search(search=search, author=author, base_model=base_model, limit=limit)
            items = []
            progress = Progress(TextColumn("hf pull"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), console=err_console, transient=True)
            with progress:
                task = progress.add_task("", total=len(refs))
                for hit in refs:
                    progress.update(task, description=hit["repo_id"])
                    try:
                        got = c.hf_import(hit["repo_id"], revision=hit["sha"], visibility=visibility)["items"]
                    except LoomError as e:  # one failing repo does not stop the others
                        got = [{"repo_id": hit["repo_id"], "status": "failed", "sha": hit["sha"],
                                "error": {"code": e.code, "message": e.message}}]
                    items += got
                    progress.advance(task)
    if json_out:
        _print_json({"items": items, **{s: sum(i["status"] == s for i in items)
                                        for s in ("imported", "skipped", "failed")}})
    else:
        for item in items:
            console.print(_line(item))
        if not items:
            console.print("no PEFT adapters found")
    if items and all(i["status"] == "failed" for i in items):
        raise typer.Exit(1)


@hf_app.command("sync")
def sync(
    repos: Annotated[list[str] | None, typer.Argument(help="Only these Hub repos (default: all you track).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check your Hub imports upstream; new commits become new versions (nothing is duplicated)."""
    from hub.cli import _print_json, console

    with _client() as c:
        res = c.hf_sync(repos or None)
    if json_out:
        _print_json(res)
    else:
        for u in res["updated"]:
            what = "new version" if u["created"] else "same content as"
            console.print(f"{u['repo_id']}@{u['sha'][:12]}: {what} [bold]{u['name']}@{u['version']}[/]")
        for name, e in res["errors"].items():
            console.print(f"[red]failed[/] {name}: {e['message']}")
        console.print(f"{len(res['updated'])} updated, {len(res['unchanged'])} unchanged, "
                      f"{len(res['errors'])} failed")
    if res["errors"]:
        raise typer.Exit(1)


@hf_app.command("push")
def push(
    ref: Annotated[str, typer.Argument(help="ns/name[@version] (default: latest)")],
    repo: Annotated[str, typer.Argument(help="org/repo on the Hub (created if missing)")],
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo private.")] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Export an adapter version to the Hub with a generated model card (lineage included)."""
    from hub.cli import _print_json, console

    with _client() as c:
        res = c.hf_export(ref, repo, private=private, commit_message=message)
    if json_out:
        _print_json(res)
    else:
        console.print(f"pushed {res['name']}@{res['version']} to {res['url']} at commit {res['commit_sha'][:12]}")
