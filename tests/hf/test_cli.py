"""`loom hf pull|sync|push` through the CLI's main() against a real uvicorn server and the fake Hub."""

from __future__ import annotations

import json

import pytest

from tests.helpers import serve_in_thread
from tests.hf.util import seed

REPO = "alice/pico-french"


@pytest.fixture
def server(hf_hub):
    """A real HTTP server (uvicorn in a thread) serving the app of ``hf_hub``; yields its URL."""
    from hub.api import create_app

    with serve_in_thread(create_app(hub=hf_hub, warm_index=False)) as url:
        yield url


@pytest.fixture
def loom(server, hf_hub, capsys, monkeypatch):
    """Run ``loom --server URL --token <alice's> ...`` (``hf`` is a registered plugin); (exit code, stdout, stderr)."""
    import hub.cli

    monkeypatch.delenv("LOOM_TOKEN", raising=False)
    _, token = hf_hub.users.create_token("alice")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = hub.cli.main(["--server", server, "--token", token, *args])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return run


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pull_sync_push(loom, fake_hub, lora_dirs):
    sha = seed(fake_hub, REPO, lora_dirs["one"], "Answers in French.")
    rc, out, err = loom("hf", "pull", REPO, "--json")
    assert rc == 0, err
    item = json.loads(out)["items"][0]
    assert item["status"] == "imported" and item["version"]["source"] == f"hf:{REPO}@{sha}"
    rc, out, err = loom("hf", "pull", f"{REPO}@{sha}")
    assert rc == 0 and "already imported" in out and "alice/pico-french@1" in out, err

    seed(fake_hub, "alice/pico-b", lora_dirs["two"])
    rc, out, err = loom("hf", "pull", "--author", "alice", "--limit", "5")
    assert rc == 0, err
    assert "imported alice/pico-b" in out and "already imported: alice/pico-french" in out

    new = seed(fake_hub, REPO, lora_dirs["three"])
    rc, out, err = loom("hf", "sync", "--json")
    assert rc == 0, err
    assert json.loads(out)["updated"] == [{"name": "alice/pico-french", "version": 2, "repo_id": REPO,
                                           "sha": new, "created": True}]
    rc, out, _ = loom("hf", "sync")
    assert rc == 0 and "0 updated, 2 unchanged, 0 failed" in out

    rc, out, err = loom("hf", "push", "alice/pico-french@2", "alice/french-export", "--private", "--json")
    assert rc == 0, err
    assert json.loads(out)["commit_sha"] == fake_hub.repo("alice/french-export").head().oid
    files = fake_hub.repo("alice/french-export").head().files
    assert files["adapter_model.safetensors"].data == (lora_dirs["three"] / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_errors_are_one_line_and_exit_1(loom, fake_hub):
    rc, _, err = loom("hf", "pull", "alice/missing")
    assert rc == 1 and "error (not_found)" in err and "alice/missing" in err
    rc, _, err = loom("hf", "pull")  # a wrong command line: a usage error
    assert rc == 2 and "give either org/repo[@rev] or --search" in err and len(err.strip().splitlines()) == 1
    rc, _, err = loom("hf", "push", "alice/none", "alice/x")
    assert rc == 1 and "error (not_found)" in err
    rc, out, err = loom("hf", "sync", "alice/never-pulled")  # it said "0 updated, 0 unchanged, 0 failed"
    assert rc == 1 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert "error (not_found): alice/never-pulled was never imported by alice" in err
    assert "`loom hf pull alice/never-pulled`" in err
