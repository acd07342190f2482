"""The registry fixtures (SQLite and PostgreSQL) for the job tests."""

from tests.services.fixtures import *  # noqa: F403
