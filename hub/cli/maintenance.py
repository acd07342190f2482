"""``loom reindex`` and ``loom fsck``: keep the search index and the blob store in step with the database
(local: ``LOOM_DATA_DIR`` / ``LOOM_DATABASE_URL``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn

from hub.cli import common
from hub.cli.common import JsonOpt

app = typer.Typer()


@app.command()
def reindex(json_out: JsonOpt = False) -> None:
    """Re-embed every adapter with the configured model and rebuild the search index."""
    with common.local_hub(existing=True) as hub:
        progress = Progress(TextColumn("reindex"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            console=common.err_console, transient=True)
        with progress:
            task = progress.add_task("reindex", total=None)
            n = hub.search.reindex(progress=lambda done, total: progress.update(task, completed=done, total=total))
    if json_out:
        common.print_json({"indexed": n})
    else:
        common.console.print(f"re-embedded and indexed {n} adapter(s)")


@app.command()
def fsck(repair: Annotated[bool, typer.Option("--repair", help="Fix what is found.")] = False,
         grace: Annotated[float, typer.Option("--grace", help="Keep orphan blobs younger than this (s).")] = 3600.0,
         kind: Annotated[list[str] | None, typer.Option("--kind", help="Check only artifacts of this kind "
                                                         "(adapter, router, generator); repeat.")] = None,
         json_out: JsonOpt = False) -> None:
    """Check the DB against the blob store and the search index; --repair fixes mismatches."""
    from hub.core.files import KINDS

    for k in kind or ():
        if k not in KINDS:
            raise typer.BadParameter(f"--kind must be one of {', '.join(KINDS)}, got {k!r}")
    with common.local_hub(existing=True) as hub:
        rep = hub.fsck.run(repair=repair, orphan_grace_s=grace, kinds=tuple(kind) if kind else None)
    out = common.console
    if json_out:
        common.print_json(rep.to_dict())
    else:
        out.print("checked " + (", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(rep.checked.items()))
                                or "nothing"))
        for m in rep.missing_files:
            out.print(f"[red]missing file[/] {m['file']} of {m['kind']} {m['version']}")
        for m in rep.missing_blobs:
            out.print(f"[red]missing blob[/] {m['key'][:12]} ({m['file']} of {m['version']})")
        for k in rep.orphan_blobs:
            out.print(f"[yellow]orphan blob[/] {k}")
        if rep.young_orphans:
            out.print(f"{len(rep.young_orphans)} recent unreferenced blob(s) kept (publishes in flight?)")
        for n in rep.stale_temp_files:
            out.print(f"[yellow]stale upload temp file[/] {n}")
        for n in rep.missing_embeddings:
            out.print(f"[yellow]no embedding[/] {n}")
        if rep.stale_index:
            out.print("the search index on disk is behind the database (the next start rebuilds it from the "
                      "stored vectors; --repair now)", soft_wrap=True)
        for r in rep.repaired:
            out.print(f"[green]repaired:[/] {r}")
        out.print("ok" if rep.ok else ("problems found" + ("" if repair else "; run `loom fsck --repair`")))
    if not rep.ok and not repair:
        raise typer.Exit(1)
