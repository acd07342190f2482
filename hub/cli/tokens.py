"""``loom token create|ls|revoke``: API tokens (create is local: it writes the hub's database directly; ls and
revoke talk to the running hub with your token)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hub.cli import common
from hub.cli.common import JsonOpt

app = typer.Typer(help="API tokens: create (local), ls and revoke (remote).", no_args_is_help=True)


@app.command("create")
def token_create(user: Annotated[str, typer.Argument(help="User name (created if needed).")],
                 label: Annotated[str | None, typer.Option("--label")] = None, json_out: JsonOpt = False) -> None:
    """Create an API token for USER; it is printed once and only its hash is stored."""
    with common.local_hub() as hub:
        u, token = hub.users.create_token(user, label)
    if json_out:
        common.print_json({"user": u.name, "token": token})
    else:
        common.console.print(f"token for {u.name} (shown once; export LOOM_TOKEN=...):")
        print(token)


@app.command("ls")
def token_ls(json_out: JsonOpt = False) -> None:
    """List your API tokens (remote, with --token): id, prefix, label, when created, last used and revoked."""
    with common.client() as client:
        items = client.tokens()
    if json_out:
        common.print_json(items)
        return
    common.console.print(tokens_table(items, common.console.width))


def tokens_table(items: list[dict[str, Any]], width: int) -> Table:
    """Tokens as a table whose id, prefix and times never wrap or shrink (``YYYY-MM-DD HH:MM`` UTC); the label
    wraps in what is left, and the creation time shows only where the terminal is wide (it cut every time to
    its date at 80 columns)."""
    from rich import box

    def when(stamp: str | None) -> str:
        return (stamp or "")[:16].replace("T", " ")

    columns = ["id", "prefix", "label", "created", "last used", "revoked"]
    if width < 100:
        columns.remove("created")
    t = Table(title="tokens (UTC)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in columns:
        if col == "label":
            t.add_column(col, overflow="fold", min_width=8)
        else:
            t.add_column(col, no_wrap=True, min_width=16 if col in ("created", "last used", "revoked") else None)
    for tok in items:
        cells = {"id": str(tok["id"]), "prefix": tok["prefix"] + "...", "label": tok["label"] or "",
                 "created": when(tok["created_at"]), "last used": when(tok["last_used_at"]),
                 "revoked": when(tok["revoked_at"])}
        t.add_row(*(cells[c] for c in columns))
    return t


@app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id (see loom token ls).")],
                 json_out: JsonOpt = False) -> None:
    """Revoke one of your API tokens (remote, with --token); it stops working at once."""
    with common.client() as client:
        t = client.revoke_token(token_id)
    if json_out:
        common.print_json(t)
    else:
        common.console.print(f"revoked token {t['id']} ({t['prefix']}...)")
