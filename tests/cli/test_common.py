"""The helpers every command shares (:mod:`hub.cli.common`, :mod:`hub.cli.jobwatch`)."""

from __future__ import annotations

import json

import pytest
import typer

from hub.cli import common, jobwatch


def test_parse_params_reads_json_values_and_names_the_option():
    got = common.parse_params(["k=2", "density=0.5", "name=x", "flags=[1, 2]", "on=true", "empty="])
    assert got == {"k": 2, "density": 0.5, "name": "x", "flags": [1, 2], "on": True, "empty": ""}
    with pytest.raises(typer.BadParameter, match="--train must be key=value, got 'lr'"):
        common.parse_params(["lr"], "--train")
    with pytest.raises(typer.BadParameter, match="--param"):
        common.parse_params(["=3"])


def test_print_error_is_one_line_of_plain_text(capsys):
    message = "a value like ns/name[@v] and [bold]x[/bold]\n" + "long " * 60
    common.print_error(message, "error (invalid_input)")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error (invalid_input): a value like ns/name[@v] and [bold]x[/bold] long long")


def test_result_text_names_what_a_job_published():
    assert jobwatch.result_text({"result": {"adapter": "alice/ab", "version": 1, "method": "cat"}}) \
        == "alice/ab@1 (cat)"
    router = {"router": "alice/r", "version": 2, "preset": "meteora", "experts": ["a/x", "a/y"],
              "first_loss": 1.5, "final_loss": 0.25}
    assert jobwatch.result_text({"result": router}) == "alice/r@2 (meteora over 2 experts; loss 1.500 -> 0.250)"
    assert jobwatch.result_text({"result": {"generator": "alice/g@1"}}) == "alice/g@1"


def test_root_options_reach_settings_and_client(tmp_path, monkeypatch):
    monkeypatch.setattr(common.options, "data_dir", tmp_path / "d")
    monkeypatch.setattr(common.options, "server", "http://127.0.0.1:1234/")
    assert common.settings().data_dir == tmp_path / "d"
    with common.client() as c:
        assert c.server_url == "http://127.0.0.1:1234"


def test_print_listing_is_json_or_a_table(capsys):
    items = [{"id": "tiny/llama", "revision": "main"}, {"id": "tiny/qwen", "revision": "abc"}]
    common.print_listing(items, True, "bases", ("id", "revision"), lambda b: (b["id"], b["revision"]))
    assert json.loads(capsys.readouterr().out) == items
    common.print_listing(items, False, "bases", ("id", "revision"), lambda b: (b["id"], b["revision"]))
    lines = capsys.readouterr().out.splitlines()
    assert "bases" in lines[0] and any("tiny/qwen" in line and "abc" in line for line in lines)


@pytest.mark.parametrize("width", [50, 60, 80, 100, 140])
def test_adapter_table_keeps_names_and_versions_readable_on_narrow_terminals(width):
    """#18.12: a small terminal used to squeeze every column to nothing ("┃┃┃"); columns are dropped instead."""
    import io

    from rich.console import Console

    from hub.cli.common import adapter_table

    rows = [{"id": "zoo/caesar_1", "latest_version": 7, "rank": 8, "base_model": "loom-testbed/llama-2m",
             "tags": ["cipher"], "downloads": 3, "description": "Shift each letter forward by one",
             "visibility": "public"}]
    out = io.StringIO()
    Console(file=out, width=width).print(adapter_table(rows, "adapters", width=width))
    text = out.getvalue()
    assert "zoo/caesar_1" in text and " 7 " in text and "Shift" in text, text
    assert "…" not in text and all(len(line) <= width for line in text.splitlines())
    assert ("loom-testbed/llama-2m" in text) == (width >= 70)
