"""Reusable fixtures for tests that talk to a fake Hugging Face Hub.

Other test packages (service, API, CLI tests) can use them by importing them into their own
conftest.py::

    from tests.hf_sync.fixtures import anon_api, api, fake_hub, hf_env  # noqa: F401

tests/conftest.py sets HF_HUB_OFFLINE=1 for the whole suite, and huggingface_hub reads it (and
HF_HOME, HF_HUB_DISABLE_XET) into ``huggingface_hub.constants`` at import time, so the environment
*and* the constants are patched here, per test (monkeypatch undoes both).
"""

from __future__ import annotations

import pytest

from tests.hf_sync.fake_hub import FakeHub

TOKEN = "hf_alice_secret_token_0123456789"
OTHER_TOKEN = "hf_bob_secret_token_9876543210"


@pytest.fixture
def hf_env(tmp_path_factory, monkeypatch):
    """A private HF_HOME (outside tmp_path, which tests inspect), online mode, Xet off, no ambient token."""
    from huggingface_hub import constants

    home = tmp_path_factory.mktemp("hf_home")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    patches = {
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
    }
    for name, value in patches.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    return home


@pytest.fixture
def fake_hub(hf_env, monkeypatch):
    """A started FakeHub (users alice and bob; org loom-org with alice as member).

    Clients reach it through ``HfApi(endpoint=hub.url)``, which passes the endpoint on every call.
    ``constants.ENDPOINT`` is deliberately NOT patched: file URLs are built from a template frozen
    at import and then rewritten only when they start with ``constants.ENDPOINT``, so patching it
    would send downloads to huggingface.co. HF_ENDPOINT is set for subprocesses only.
    """
    hub = FakeHub(tokens={TOKEN: "alice", OTHER_TOKEN: "bob"}, orgs={"loom-org": {"alice"}}).start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.stop()


@pytest.fixture
def api(fake_hub):
    """An HfApi logged in as alice, pointed at the fake Hub."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=fake_hub.url, token=TOKEN)


@pytest.fixture
def anon_api(fake_hub):
    """An anonymous HfApi (token=False: no ambient token is ever used)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=fake_hub.url, token=False)
