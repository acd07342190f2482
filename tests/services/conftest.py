"""Fixtures of the registry tests (shared with tests/api and tests/cli)."""

from tests.services.fixtures import *  # noqa: F403
