"""Every ``loom`` error is ONE line on stderr, never a traceback (the real console script, in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from hub.cli import errors

LOOM = Path(sys.executable).with_name("loom")  # the console script installed next to this interpreter


def loom(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``loom`` script with no hub configured and a narrow terminal (long lines would wrap)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOOM_SERVER_URL", "LOOM_TOKEN", "LOOM_DEBUG")}
    env["COLUMNS"] = "60"
    return subprocess.run([str(LOOM), *args], capture_output=True, text=True, env=env, input=stdin, timeout=60)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "bad.json").write_text("{not json")
    return d


USAGE = [  # (argv, words the line must hold); all exit 2
    (["publish", "{dir}"], ["loom publish", "Missing option", "--name"]),
    (["ls", "--limit", "abc"], ["loom ls", "--limit", "valid integer"]),
    (["nosuch"], ["No such command", "nosuch"]),
    (["pull"], ["loom pull", "Missing argument"]),
    (["show", "a/b", "--bogus"], ["loom show", "No such option", "--bogus"]),
    (["--server"], ["--server", "requires an argument"]),
    (["jobs", "show"], ["loom jobs show", "Missing argument"]),
    (["compose", "--from", "a/b", "-p", "novalue"], ["--param must be key=value", "novalue"]),
    (["base", "add", "tiny/llama", "--config", "{dir}/bad.json"], ["bad.json is not JSON"]),
    (["base", "add", "tiny/llama", "--config", "{dir}"], ["--config", "is a directory"]),
    (["serve-inference", "--device", "tpu"], ["--device must be cpu or cuda", "tpu"]),
    (["search", "caps", "-k", "0"], ["'--k' / '-k'", "greater than or equal to 1"]),
    (["compose", "make it loud"], ["--base-model is needed with a task"]),
    (["hf", "pull"], ["give either org/repo[@rev] or --search"]),
]


@pytest.mark.parametrize(("argv", "words"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line_exit_2(argv, words, files):
    p = loom(*[a.replace("{dir}", str(files)) for a in argv])
    lines = p.stderr.rstrip("\n").splitlines()  # one line, and no blank one before it
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and "Traceback" not in p.stderr and p.stdout == "", p.stderr
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]


DOMAIN = [  # (argv, words); all exit 1
    (["show", "Bad/Name"], ["error (invalid_input):", "namespace 'Bad' is not allowed"]),
    (["pull", "a/b@[v]", "out"], ["error (invalid_input):", "[v]"]),  # brackets are text, not rich markup
    (["--server", "http://127.0.0.1:9", "ls"], ["cannot reach http://127.0.0.1:9", "loom serve"]),
    (["--server", "http://127.0.0.1:9", "pull", "a/b", "out"], ["cannot reach http://127.0.0.1:9"]),  # a transfer
]


@pytest.mark.parametrize(("argv", "words"), DOMAIN, ids=[" ".join(a) for a, _ in DOMAIN])
def test_domain_errors_are_one_line_exit_1(argv, words):
    p = loom(*argv)
    lines = p.stderr.rstrip("\n").splitlines()  # one line, and no blank one before it
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1 and "Traceback" not in p.stderr and p.stdout == "", p.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_declined_confirmation_is_one_line():
    p = loom("rm", "a/b", stdin="n\n")
    assert p.returncode == 1 and p.stderr.strip() == "aborted" and "delete a/b" in p.stdout


def test_no_arguments_prints_the_help():
    p = loom()
    assert p.returncode == 2 and "Usage: loom" in p.stdout and "Traceback" not in p.stderr


def test_unexpected_errors_are_one_line_unless_debugging(capsys, monkeypatch):
    monkeypatch.delenv("LOOM_DEBUG", raising=False)
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise RuntimeError("disk on fire\nsecond line")

    @app.command()
    def quit_3() -> None:
        raise typer.Exit(3)

    assert errors.run(app, ["boom"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: RuntimeError: disk on fire second line (LOOM_DEBUG=1 shows the traceback)"
    assert errors.run(app, ["quit-3"]) == 3
    monkeypatch.setenv("LOOM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        errors.run(app, ["boom"])


def test_a_refused_token_hint_names_loom_token_only_for_loom_tokens(capsys):
    from hub.core.errors import HF_CREDENTIAL, AuthenticationError

    app = typer.Typer()

    @app.command()
    def loom_token() -> None:
        raise AuthenticationError("this needs an API token (Authorization: Bearer <token>)")

    @app.command()
    def hf_token() -> None:
        raise AuthenticationError("pushing to org/repo needs a Hugging Face token with write access",
                                  credential=HF_CREDENTIAL)

    @app.command()
    def hf_import() -> None:  # a Loom token missing, in words about the Hugging Face Hub
        raise AuthenticationError("importing from the Hugging Face Hub needs an API token")

    assert errors.run(app, ["loom-token"]) == 1
    assert "set LOOM_TOKEN or pass --token" in capsys.readouterr().err
    assert errors.run(app, ["hf-token"]) == 1
    err = capsys.readouterr().err
    assert "Hugging Face token" in err and "LOOM_TOKEN" not in err
    assert errors.run(app, ["hf-import"]) == 1
    assert "set LOOM_TOKEN or pass --token" in capsys.readouterr().err
