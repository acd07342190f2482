"""Fixtures of the registry tests (shared with tests/api and tests/cli)."""

from tests.registry.fixtures import *  # noqa: F403
