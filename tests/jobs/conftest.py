"""The registry fixtures (SQLite and PostgreSQL) for the job tests."""

from tests.registry.fixtures import *  # noqa: F403
