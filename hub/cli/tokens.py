"""``loom token create``: API tokens (local: writes the hub's database directly)."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli import common
from hub.cli.common import JsonOpt

app = typer.Typer(help="API tokens (local).", no_args_is_help=True)


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
