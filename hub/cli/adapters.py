"""``loom publish|search|pull|ls|show|rm``: adapters in a running hub (remote, through :mod:`hub.client`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli import common
from hub.cli.common import JsonOpt
from hub.core.files import ADAPTER_UPLOAD_FILES

app = typer.Typer()


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
    total = sum((folder / n).stat().st_size for n in ADAPTER_UPLOAD_FILES if (folder / n).is_file())
    with common.client() as c, common.transfer_bar("upload") as bar:
        task = bar.add_task("upload", total=total)
        res = c.publish(folder, name, description=description, tags=tag, license=license,
                        private=True if private else None, progress=lambda n: bar.advance(task, n))
    if json_out:
        common.print_json(res)
        return
    v = res["version"]
    verb = "published" if res["created"] else "unchanged (identical content):"
    common.console.print(f"{verb} [bold]{res['adapter']['id']}@{v['number']}[/] rank {v['rank']} "
                         f"on {v['base_model']} sha256 {v['sha256'][:12]}")
    for w in res.get("warnings", []):
        common.err_console.print(f"[yellow]warning:[/] {w}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Describe the task.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many results (1-100).")] = 10,
    base_model: Annotated[str | None, typer.Option("--base-model")] = None,
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    license: Annotated[str | None, typer.Option("--license")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    min_rank: Annotated[int | None, typer.Option("--min-rank")] = None,
    max_rank: Annotated[int | None, typer.Option("--max-rank")] = None,
    rerank: Annotated[bool | None, typer.Option(
        "--rerank/--no-rerank", help="Reorder the best hits with the hub's reranker (slower; default: when the hub "
                                     "has one, LOOM_SEARCH_RERANK, and the first hit is not clearly ahead).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Find adapters by describing what they should do."""
    with common.client() as c:
        res = c.search(query, k, rerank=rerank, base_model=base_model, tag=tag, license=license, owner=owner,
                       min_rank=min_rank, max_rank=max_rank)
    if json_out:
        common.print_json(res)
        return
    hits = res["results"]
    title = f"results for {query!r}" + (" (reranked)" if res.get("reranked") else "")
    common.console.print(common.adapter_table([h["adapter"] for h in hits], title,
                                              [h["score"] for h in hits],
                                              marks=["weak" if h.get("match") == "weak" else "" for h in hits]))
    if res.get("match") == "weak":
        common.console.print(f"No good match: {'every result scores' if hits else 'nothing scores'} below the "
                             f"match threshold {res.get('threshold', 0):.2f}; no adapter here seems to do this.")


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="namespace/name[@version]")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the PEFT files into.")],
    json_out: JsonOpt = False,
) -> None:
    """Download an adapter version into a folder that peft loads."""
    with common.client() as c, common.transfer_bar("download") as bar:
        task = bar.add_task("download", total=None)
        out = c.pull(ref, dest, progress=lambda n: bar.advance(task, n),
                     on_total=lambda t: bar.update(task, total=t))
    files = sorted(p.name for p in out.iterdir())
    if json_out:
        common.print_json({"ref": ref, "dest": str(out), "files": files})
    else:
        common.console.print(f"pulled {ref} into {out}: {', '.join(files)}")


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
    with common.client() as c:
        res = c.list(tag=tag, base_model=base_model, owner=owner, limit=limit, offset=offset)
    if json_out:
        common.print_json(res)
    else:
        common.console.print(common.adapter_table(res["items"], f"{res['total']} adapter(s)"))


@app.command()
def show(ref: Annotated[str, typer.Argument(help="namespace/name")], json_out: JsonOpt = False) -> None:
    """Show an adapter, its versions and lineage."""
    with common.client() as c:
        detail = c.get(ref)
        versions = c.versions(ref)
    if json_out:
        common.print_json({**detail, "versions": versions})
        return
    a = detail["adapter"]
    out = common.console
    out.print(f"[bold]{a['id']}[/] ({a['visibility']}, owner {a['owner']}, {a['downloads']} downloads)")
    out.print(a["description"] or "(no description)")
    out.print(f"tags: {', '.join(a['tags']) or '-'}   license: {a['license'] or '-'}   base: {a['base_model']}")
    out.print(common.table("versions", ("ver", "rank", "targets", "size", "sha256", "source", "created"), (
        (str(v["number"]), str(v["rank"]), ",".join(v["target_modules"]), str(v["size"]), v["sha256"][:12],
         v["source"], str(v["created_at"])[:19]) for v in versions)))
    for e in detail.get("parents", []):
        out.print(f"parent: {e['version']} via {e['method']} (weight {e['weight']})")


@app.command()
def rm(ref: Annotated[str, typer.Argument(help="namespace/name")],
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete an adapter and all its versions (owner only)."""
    if not yes:
        typer.confirm(f"delete {ref} and all its versions?", abort=True)
    with common.client() as c:
        c.delete(ref)
    common.console.print(f"deleted {ref}")
