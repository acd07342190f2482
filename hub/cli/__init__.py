"""``loom``: the command line of Loom (typer + rich).

Remote commands talk to a running hub through :mod:`hub.client` (``--server`` / ``LOOM_SERVER_URL``,
``--token`` / ``LOOM_TOKEN``): ``publish``, ``search``, ``pull``, ``ls``, ``show``, ``rm``, ``base``,
``compose``, ``jobs``, ``router``, ``train-generator``, ``generate``, ``transfer``, ``hf``.
Local commands open the hub's database and data directory directly (``LOOM_DATA_DIR``,
``LOOM_DATABASE_URL``): ``serve``, ``worker``, ``serve-inference``, ``db``, ``token``, ``reindex``,
``fsck``, ``demo``, ``eval``. Every listing takes ``--json`` for scripts. Every error is one line on
stderr (:mod:`hub.cli.errors`).

Adding a command: write it in the module of its concept (or a new module ``hub/cli/<concept>.py``
with ``app = typer.Typer()`` and ``@app.command()`` functions), then add one line to :data:`COMMANDS`:
``(<module>.app, None)`` puts its commands at the top level, ``(<module>.app, "group")`` makes them
``loom group ...``. Shared helpers are in :mod:`hub.cli.common` (consoles, ``client()``,
``local_hub()``, ``print_json``, ``JsonOpt``, tables, ``parse_params``) and :mod:`hub.cli.jobwatch`
(submit a job and follow it). Keep heavy imports (torch, transformers, faiss, SQLAlchemy, the
services) inside the command functions so ``loom --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.cli import (
    adapters,
    bases,
    common,
    compose,
    db,
    errors,
    generation,
    hf,
    jobs,
    maintenance,
    routers,
    server,
    testbed,
    tokens,
)

#: Every command module's typer app, in ``loom --help`` order, with its group name (None: top level).
COMMANDS: tuple[tuple[typer.Typer, str | None], ...] = (
    (adapters.app, None),     # publish, search, pull, ls, show, rm
    (bases.app, "base"),      # base add|ls
    (compose.app, None),      # compose
    (jobs.app, "jobs"),       # jobs [show|cancel]
    (routers.app, "router"),  # router train|presets
    (generation.app, None),   # train-generator, generate, transfer
    (hf.app, "hf"),           # hf pull|sync|push
    (server.app, None),       # serve, worker, serve-inference
    (db.app, "db"),           # db upgrade|downgrade|current
    (tokens.app, "token"),    # token create (local), token ls|revoke (remote)
    (maintenance.app, None),  # reindex, fsck
    (testbed.app, None),      # demo, eval
)

app = typer.Typer(name="loom", help="Loom: a self-hosted hub for LoRA adapters.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
for _sub, _name in COMMANDS:
    app.add_typer(_sub, name=_name)


@app.callback()
def root_options(
    server_url: Annotated[str | None, typer.Option("--server", envvar="LOOM_SERVER_URL", help="Hub URL.")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="LOOM_TOKEN", help="API token.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="LOOM_DATA_DIR",
                                                  help="Data directory of local commands.")] = None,
) -> None:
    """Loom: a self-hosted hub for LoRA adapters."""
    common.options.server, common.options.token, common.options.data_dir = server_url, token, data_dir


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (``loom``): runs the command; every error is one line on stderr.

    Returns:
        the exit code: 0, 1 for a failed command, 2 for a wrong command line (see :mod:`hub.cli.errors`).
    """
    return errors.run(app, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
