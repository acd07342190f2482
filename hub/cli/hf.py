"""``loom hf pull|sync|push``: import from, re-sync with and export to the Hugging Face Hub, through a
running hub.

Like the other remote commands, these call the hub's REST API (``--server`` / ``LOOM_SERVER_URL``,
``--token`` / ``LOOM_TOKEN``); the hub holds the Hugging Face token (``LOOM_HF_TOKEN``), so it never
passes through the CLI.

    loom hf pull org/repo[@rev] [--name ns/name] [--private]
    loom hf pull --search Q --author A --base-model B --limit N
    loom hf sync [org/repo ...]
    loom hf push ns/name[@v] org/repo [--private]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from hub.cli import common
from hub.cli.common import JsonOpt

if TYPE_CHECKING:  # pragma: no cover
    from hub.client_hf import HfClient

app = typer.Typer(help="Hugging Face Hub: import (pull), re-sync and export (push) adapters.", no_args_is_help=True)


@contextmanager
def hf_client() -> Iterator[HfClient]:
    """The Hub sync routes of the hub at ``--server``, through :func:`hub.cli.common.client`."""
    from hub.client_hf import HfClient

    with common.client() as c:
        yield HfClient(c)


def item_line(item: dict[str, Any]) -> str:
    """One line of rich markup telling how the import of one Hub repo went."""
    if item["status"] == "failed":
        return f"[red]failed[/] {item['repo_id']}: {item['error']['message']}"
    v, a = item["version"], item["adapter"]
    verb = "imported" if item["status"] == "imported" else "already imported:"
    return f"{verb} {item['repo_id']}@{item['sha'][:12]} -> [bold]{a['id']}@{v['number']}[/] rank {v['rank']}"


@app.command("pull")
def pull(
    ref: Annotated[str | None, typer.Argument(help="org/repo[@revision] (omit with --search/--author)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Loom ns/name (default <your user>/<repo>)")] = None,
    private: Annotated[bool, typer.Option("--private", help="Visible to you only.")] = False,
    search: Annotated[str | None, typer.Option("--search", help="Bulk: repos whose id contains this.")] = None,
    author: Annotated[str | None, typer.Option("--author", help="Bulk: a Hub user or organisation.")] = None,
    base_model: Annotated[str | None, typer.Option("--base-model", help="Bulk: adapters of this base.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Bulk: at most this many repos.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Import a LoRA adapter from the Hub (pinned to a commit sha), or every PEFT adapter a search finds."""
    from hub.core.errors import InvalidInputError, LoomError

    bulk = search is not None or author is not None or base_model is not None
    if (ref is None) == (not bulk):  # the command line is wrong: a usage error (exit 2)
        raise typer.BadParameter("give either org/repo[@rev] or --search/--author/--base-model")
    visibility = "private" if private else None
    with hf_client() as hf:
        if ref is not None:
            items = hf.import_repo(ref, name=name, visibility=visibility)["items"]
        else:
            if name is not None:
                raise InvalidInputError("--name applies to one repo, not to a search")
            refs = hf.search(search=search, author=author, base_model=base_model, limit=limit)
            items = []
            progress = Progress(TextColumn("hf pull"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), console=common.err_console, transient=True)
            with progress:
                task = progress.add_task("", total=len(refs))
                for hit in refs:
                    progress.update(task, description=hit["repo_id"])
                    try:
                        got = hf.import_repo(hit["repo_id"], revision=hit["sha"], visibility=visibility)["items"]
                    except LoomError as e:  # one failing repo does not stop the others
                        got = [{"repo_id": hit["repo_id"], "status": "failed", "sha": hit["sha"],
                                "error": {"code": e.code, "message": e.message}}]
                    items += got
                    progress.advance(task)
    if json_out:
        common.print_json({"items": items, **{s: sum(i["status"] == s for i in items)
                                              for s in ("imported", "skipped", "failed")}})
    else:
        for item in items:
            common.console.print(item_line(item))
        if not items:
            common.console.print("no PEFT adapters found")
    if items and all(i["status"] == "failed" for i in items):
        raise typer.Exit(1)


@app.command("sync")
def sync(
    repos: Annotated[list[str] | None, typer.Argument(help="Only these Hub repos (default: all you track).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check your Hub imports upstream; new commits become new versions (nothing is duplicated)."""
    with hf_client() as hf:
        res = hf.sync(repos or None)
    if json_out:
        common.print_json(res)
    else:
        out = common.console
        for u in res["updated"]:
            what = "new version" if u["created"] else "same content as"
            out.print(f"{u['repo_id']}@{u['sha'][:12]}: {what} [bold]{u['name']}@{u['version']}[/]")
        for name, e in res["errors"].items():
            out.print(f"[red]failed[/] {name}: {e['message']}")
        out.print(f"{len(res['updated'])} updated, {len(res['unchanged'])} unchanged, {len(res['errors'])} failed")
    if res["errors"]:
        raise typer.Exit(1)


@app.command("push")
def push(
    ref: Annotated[str, typer.Argument(help="ns/name[@version] (default: latest)")],
    repo: Annotated[str, typer.Argument(help="org/repo on the Hub (created if missing)")],
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo private.")] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export an adapter version to the Hub with a generated model card (lineage included)."""
    with hf_client() as hf:
        res = hf.export(ref, repo, private=private, commit_message=message)
    if json_out:
        common.print_json(res)
    else:
        common.console.print(f"pushed {res['name']}@{res['version']} to {res['url']} at commit "
                             f"{res['commit_sha'][:12]}")
