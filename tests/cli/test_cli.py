"""The `loom` CLI and hub.client against a real uvicorn server: publish -> search in other words -> pull -> peft."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import torch

from hub.cli import main
from tests.helpers import peft_logits


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_publish_search_pull_load_in_peft(server, capsys, monkeypatch, tmp_path, adapter_dirs, tiny_model, db_url):
    url, hub = server
    monkeypatch.setenv("LOOM_DATA_DIR", str(hub.settings.data_dir))
    monkeypatch.setenv("LOOM_DATABASE_URL", db_url)
    monkeypatch.setenv("LOOM_SERVER_URL", url)
    monkeypatch.delenv("LOOM_TOKEN", raising=False)
    rc, out, _ = run(capsys, "token", "create", "alice", "--json")
    assert rc == 0
    token = json.loads(out)["token"]
    g = ["--token", token]

    rc, out, err = run(capsys, *g, "publish", str(adapter_dirs[0]), "--name", "alice/shout", "--description",
                       "Turns every letter of the input into upper case.", "--tag", "text", "--json")
    assert rc == 0, err
    assert json.loads(out)["version"]["number"] == 1
    rc, out, err = run(capsys, *g, "publish", str(adapter_dirs[1]), "--name", "alice/sql", "--description",
                       "Writes SQL queries for questions about a database.", "--tag", "code")
    assert rc == 0 and "published alice/sql@1" in out, err

    rc, out, err = run(capsys, "search", "capitalize all the characters of my sentence", "--k", "1", "--json")
    assert rc == 0, err
    hit = json.loads(out)["results"][0]
    assert hit["adapter"]["id"] == "alice/shout" and hit["score"] > 0.3
    rc, out, _ = run(capsys, "search", "capitalize my sentence")
    assert rc == 0 and "alice/shout" in out  # the human-readable table

    dest = tmp_path / "pulled"
    rc, out, err = run(capsys, "pull", "alice/shout@1", str(dest), "--json")
    assert rc == 0, err
    assert set(json.loads(out)["files"]) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    ref = peft_logits(tiny_model, adapter_dirs[0], ids)
    got = peft_logits(tiny_model, dest, ids)
    assert torch.equal(ref, got)
    assert not torch.allclose(got, tiny_model(input_ids=ids).logits)  # the adapter does something

    rc, out, _ = run(capsys, "ls", "--json")
    assert rc == 0 and sorted(a["id"] for a in json.loads(out)["items"]) == ["alice/shout", "alice/sql"]
    rc, out, _ = run(capsys, "show", "alice/shout", "--json")
    assert rc == 0 and json.loads(out)["adapter"]["downloads"] == 1
    rc, out, _ = run(capsys, "show", "alice/shout")
    assert rc == 0 and "versions" in out and "alice/shout" in out

    # errors: one clear line, exit code 1
    rc, _, err = run(capsys, "show", "ghost/none")
    assert rc == 1 and "not_found" in err and "ghost/none" in err
    rc, _, err = run(capsys, "rm", "alice/sql", "--yes")
    assert rc == 1 and "unauthenticated" in err and "set LOOM_TOKEN or pass --token" in err
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(adapter_dirs[0] / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    rc, _, err = run(capsys, *g, "publish", str(pickled), "--name", "alice/pickled")
    assert rc == 1 and "pickle" in err
    rc, _, _ = run(capsys, *g, "rm", "alice/sql", "--yes")
    assert rc == 0

    cfg = tmp_path / "config.json"
    cfg.write_text(tiny_model.config.to_json_string())
    rc, _, err = run(capsys, *g, "base", "add", "loom-test/pico-llama", "--config", str(cfg), "--weights", "/m")
    assert rc == 1 and "under the hub's data directory or LOOM_WEIGHTS_ROOTS" in err  # outside the roots
    rc, out, err = run(capsys, *g, "base", "add", "loom-test/pico-llama", "--config", str(cfg), "--weights",
                       str(tmp_path))
    assert rc == 0 and "registered" in out, err
    rc, out, _ = run(capsys, "base", "ls", "--json")
    assert [b["id"] for b in json.loads(out)] == ["loom-test/pico-llama"]

    rc, out, _ = run(capsys, "db", "current", "--json")
    assert rc == 0 and json.loads(out)["current"] == json.loads(out)["head"]
    rc, out, _ = run(capsys, "fsck", "--grace", "0")
    assert rc == 1 and "orphan blob" in out and "loom fsck --repair" in out
    rc, out, err = run(capsys, "fsck", "--repair", "--grace", "0", "--json")  # alice/sql's blobs are orphans now
    assert rc == 0 and json.loads(out)["orphan_blobs"], err
    rc, out, _ = run(capsys, "fsck", "--json")
    assert rc == 0 and json.loads(out)["ok"]
    rc, out, _ = run(capsys, "reindex", "--json")
    assert rc == 0 and json.loads(out) == {"indexed": 1}


def test_unreachable_server_is_one_clear_line(capsys):
    rc, _, err = run(capsys, "--server", "http://127.0.0.1:9", "ls")
    assert rc == 1 and "cannot reach" in err


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys, hub.cli; assert 'torch' not in sys.modules and 'sqlalchemy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "hub.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("publish", "search", "pull", "ls", "show", "rm", "serve", "db", "reindex", "fsck", "token", "base"):
        assert cmd in out.stdout


def test_db_commands(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LOOM_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("LOOM_DATABASE_URL", raising=False)
    rc, out, _ = run(capsys, "db", "current", "--json")
    assert rc == 0 and json.loads(out)["current"] is None
    assert run(capsys, "db", "upgrade")[0] == 0
    rc, out, _ = run(capsys, "db", "current", "--json")
    assert json.loads(out)["current"] == json.loads(out)["head"] is not None
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))  # it asks first; no: nothing changes
    rc, out, err = run(capsys, "db", "downgrade", "base")
    assert rc == 1 and "downgrade the database at sqlite" in out and "aborted" in err
    rc, out, _ = run(capsys, "db", "current", "--json")
    assert json.loads(out)["current"] == json.loads(out)["head"]
    rc, out, _ = run(capsys, "db", "downgrade", "base", "--yes")
    assert rc == 0 and "base (empty)" in out
    # an unknown revision: one line naming it and the revisions there are (it was Alembic's CommandError)
    for cmd in (["upgrade", "bogus"], ["downgrade", "bogus", "--yes"]):
        rc, out, err = run(capsys, "db", *cmd)
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert "unknown migration revision 'bogus'" in err and "0001" in err and "(head)" in err, err
        assert "CommandError" not in err and "LOOM_DEBUG" not in err
    rc, out, _ = run(capsys, "db", "current", "--json")
    assert json.loads(out)["current"] is None  # nothing changed


def test_commands_that_read_a_hub_create_no_data_dir_where_there_is_none(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("LOOM_DATA_DIR", raising=False)
    monkeypatch.delenv("LOOM_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./loom-data here
    rc, out, _ = run(capsys, "db", "current", "--json")
    assert rc == 0 and json.loads(out)["current"] is None
    for cmd in (["fsck"], ["fsck", "--repair"], ["reindex"], ["db", "downgrade", "--yes"]):
        rc, _, err = run(capsys, *cmd)
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        assert f"no hub database at {tmp_path / 'loom-data' / 'loom.db'}" in err and "LOOM_DATA_DIR" in err, err
    assert list(tmp_path.iterdir()) == []  # each of them created an empty ./loom-data (and a loom.db)
    assert run(capsys, "db", "upgrade")[0] == 0  # a command that creates a hub does
    rc, out, err = run(capsys, "fsck", "--json")
    assert rc == 0 and (tmp_path / "loom-data" / "loom.db").is_file(), err
