"""The Hugging Face conventions hold when ``LOOM_HF_*`` are unset: ``HF_ENDPOINT`` (a mirror), ``HF_TOKEN`` and
the token ``hf auth login`` saved under ``HF_HOME`` are what ``loom hf pull`` and ``loom base add`` use."""

from __future__ import annotations

import pytest

from tests.helpers import serve_in_thread
from tests.hf.util import seed
from tests.hf_sync.fixtures import OTHER_TOKEN, TOKEN


def test_settings_follow_hf_conventions(fake_hub, hf_env, monkeypatch):
    from hub.settings import DEFAULT_HF_ENDPOINT, get_settings

    monkeypatch.delenv("LOOM_HF_ENDPOINT", raising=False)
    monkeypatch.delenv("LOOM_HF_TOKEN", raising=False)
    s = get_settings()
    assert s.hf_endpoint == fake_hub.url and s.hf_token is None  # HF_ENDPOINT (set by the fixture), no token
    (hf_env / "token").write_text(OTHER_TOKEN)  # what `hf auth login` writes
    assert get_settings().hf_token.get_secret_value() == OTHER_TOKEN
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the environment beats the saved token, as in huggingface_hub
    assert get_settings().hf_token.get_secret_value() == TOKEN
    monkeypatch.setenv("LOOM_HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("LOOM_HF_TOKEN", "hf_loom_own")
    s = get_settings()
    assert s.hf_endpoint == "http://127.0.0.1:9" and s.hf_token.get_secret_value() == "hf_loom_own"
    assert get_settings(hf_endpoint="http://x").hf_endpoint == "http://x"
    monkeypatch.delenv("HF_ENDPOINT")
    monkeypatch.delenv("LOOM_HF_ENDPOINT")
    assert get_settings().hf_endpoint == DEFAULT_HF_ENDPOINT


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hf_pull_uses_the_mirror_and_token_of_hf_env(make_hub, fake_hub, adapter_dirs, capsys, monkeypatch):
    """`loom hf pull` against a mirror set by HF_ENDPOINT, a private repo read with HF_TOKEN: no LOOM_HF_*."""
    from hub import cli

    monkeypatch.delenv("LOOM_HF_ENDPOINT", raising=False)
    monkeypatch.delenv("LOOM_HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    sha = seed(fake_hub, "alice/private-french", adapter_dirs[0], private=True)
    h = make_hub()  # settings from the environment only
    assert h.settings.hf_endpoint == fake_hub.url
    _, token = h.users.create_token("alice")
    from hub.api import create_app

    with serve_in_thread(create_app(hub=h, warm_index=False)) as url:
        capsys.readouterr()
        rc = cli.main(["--server", url, "--token", token, "hf", "pull", "alice/private-french", "--json"])
        out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"hf:alice/private-french@{sha}" in out.out
    assert fake_hub.authorization_seen and all(fake_hub.authorization_seen)  # the token went with every call
