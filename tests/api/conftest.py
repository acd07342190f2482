"""Fixtures of the API tests: the registry fixtures, plus an app on the test's hub and two users' tokens."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.services.fixtures import *  # noqa: F403


@dataclass
class Api:
    client: TestClient
    hub: object
    alice: dict
    bob: dict


@pytest.fixture
def make_api(make_hub, tmp_path):
    clients = []

    def make(**overrides) -> Api:
        from hub.api import create_app

        overrides.setdefault("weights_roots", [tmp_path])  # the tests' base folders may be registered over the API
        hub = make_hub(**overrides)
        _, ta = hub.users.create_token("alice")
        _, tb = hub.users.create_token("bob")
        client = TestClient(create_app(hub=hub, warm_index=False))
        clients.append(client)
        return Api(client, hub, {"Authorization": f"Bearer {ta}"}, {"Authorization": f"Bearer {tb}"})

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def api(make_api) -> Api:
    return make_api()
