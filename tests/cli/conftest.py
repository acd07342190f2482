"""Fixtures of the CLI tests: the registry fixtures plus a real uvicorn server on a free port."""

from __future__ import annotations

import pytest

from tests.helpers import free_port, serve_in_thread  # noqa: F401 (free_port: re-exported)
from tests.services.fixtures import *  # noqa: F403


@pytest.fixture
def server(make_hub, tmp_path):
    """A real HTTP server (uvicorn, in a thread) serving a hub on the test's database; yields (url, hub)."""
    from hub.api import create_app

    hub = make_hub(weights_roots=[tmp_path])  # the tests' base folders may be registered over the API
    with serve_in_thread(create_app(hub=hub)) as url:
        yield url, hub
