"""Fixtures of the Hub-sync wiring tests: a fake Hugging Face Hub, a registry Hub on SQLite and PostgreSQL
pointed at it, real PEFT folders, and an app (TestClient) with the hf router included."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.hf_sync import RetryPolicy, render_model_card
from tests.helpers import PICO_BASE_ID, make_peft_adapter
from tests.hf_sync.fixtures import TOKEN, fake_hub, hf_env  # noqa: F401
from tests.services.fixtures import *  # noqa: F403

WEBHOOK_SECRET = "whsec_loom_test_secret"
NO_SLEEP = RetryPolicy(attempts=2, sleep=lambda s: None)


def card(description: str, **fields) -> str:
    """A Hub model card for a pico-llama LoRA."""
    return render_model_card(base_model=PICO_BASE_ID, description=description, **fields)


@pytest.fixture(scope="session")
def lora_dirs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """Real PEFT LoRA folders on the pico Llama (seeds 1, 2, 3)."""
    root = tmp_path_factory.mktemp("hf_wire_peft")
    return {k: make_peft_adapter(tiny_model, root / k, seed=s) for k, s in (("one", 1), ("two", 2), ("three", 3))}


@pytest.fixture
def hf_hub(make_hub, fake_hub):  # noqa: F811
    """A registry Hub whose settings point at the fake Hugging Face Hub (token of alice, webhook secret)."""
    return make_hub(hf_endpoint=fake_hub.url, hf_token=TOKEN, hf_webhook_secret=WEBHOOK_SECRET)


@pytest.fixture
def alice(hf_hub):
    return hf_hub.users.ensure_user("alice")


@pytest.fixture
def svc(hf_hub):
    """The HfService of ``hf_hub`` with retries that do not sleep."""
    from hub.services.container import build_hf

    return build_hf(hf_hub, policy=NO_SLEEP)


@pytest.fixture
def hf_api(hf_hub):
    """A TestClient on the real app of ``hf_hub`` (create_app includes the hf router), and two users' tokens."""
    from fastapi.testclient import TestClient

    from hub.api import create_app

    app = create_app(hub=hf_hub, warm_index=False)
    _, ta = hf_hub.users.create_token("alice")
    _, tb = hf_hub.users.create_token("bob")
    with TestClient(app) as client:
        client.alice = {"Authorization": f"Bearer {ta}"}
        client.bob = {"Authorization": f"Bearer {tb}"}
        yield client
