"""``loom token create|ls|revoke``: API tokens (create is local: it writes the hub's database directly; ls and
revoke talk to the running hub with your token)."""

from __future__ import annotations

from typing import Annotated

import typer

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
    common.print_listing(items, json_out, "tokens", ("id", "prefix", "label", "created", "last used", "revoked"),
                         lambda t: (str(t["id"]), t["prefix"] + "...", t["label"] or "", t["created_at"][:19],
                                    (t["last_used_at"] or "")[:19], (t["revoked_at"] or "")[:19]))


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
