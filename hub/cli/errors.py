"""How ``loom`` ends when something goes wrong: ONE line on stderr, never a traceback, and an exit code.

- 2: the command line is wrong (a missing option or argument, a bad value, an unknown command or option);
  the line names the command, what is wrong, and where its help is.
- 1: the command failed (a domain error from the hub or the client, an unreachable hub, a failed job,
  anything unexpected).
- 130: interrupted (Ctrl-C).

``LOOM_DEBUG=1`` lets unexpected errors (not Loom's, not usage errors) through with their traceback.
"""

from __future__ import annotations

import os
from typing import Any

import typer

from hub.cli import common
from hub.core.errors import HF_CREDENTIAL, LoomError


def usage_line(exc: typer.TyperException) -> str:
    """``loom base add: Missing option '--config' (see 'loom base add --help')`` for a usage error."""
    message = exc.format_message().strip()
    ctx: Any = getattr(exc, "ctx", None)
    if ctx is None:  # raised by a command's own body (typer.BadParameter)
        return message
    path = ctx.command_path
    return f"{path}: {message.rstrip('.')} (see '{path} --help')"


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run ``app`` on ``argv`` (default: ``sys.argv[1:]``) and turn every failure into one line on stderr.

    Returns:
        the exit code: 0 on success, that of a ``typer.Exit``, else as in the module docstring.
    """
    import httpx

    try:
        rc = app(args=argv, prog_name="loom", standalone_mode=False)  # returns the code of a typer.Exit
    except LoomError as e:
        hint = ""
        # the API's words are about headers; the CLI's user sets a variable (not for a Hugging Face token's refusal)
        if e.code == "unauthenticated" and e.details.get("credential") != HF_CREDENTIAL:
            hint = (" (set LOOM_TOKEN or pass --token; `loom token create USER` on the hub makes one)"
                    if not common.options.token else " (the token in LOOM_TOKEN / --token was refused)")
        common.print_error(e.message + hint, f"error ({e.code})")
        return 1
    except httpx.TransportError as e:
        url = common.options.server or "the hub"
        common.print_error(f"cannot reach {url} ({e}); is `loom serve` running?")
        return 1
    except typer.Abort:
        common.err_console.print("aborted")
        return 1
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # usage errors: typer's (vendored click) exceptions
        if type(e).__name__ == "NoArgsIsHelpError":  # the help was printed instead (as typer itself checks)
            return e.exit_code
        common.print_error(usage_line(e))
        return e.exit_code
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except Exception as e:
        if os.environ.get("LOOM_DEBUG"):
            raise
        common.print_error(f"{type(e).__name__}: {e} (LOOM_DEBUG=1 shows the traceback)")
        return 1
    return rc if isinstance(rc, int) else 0
