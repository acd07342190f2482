"""Fixtures of the storage tests: test AWS credentials, a moto S3 server for the session, the registry fixtures."""

from __future__ import annotations

import pytest

from tests.services.fixtures import *  # noqa: F403
from tests.storage.s3server import MotoS3, aws_env


@pytest.fixture(scope="session", autouse=True)
def _aws_credentials():
    """Test credentials in the environment, where obstore and boto3 read them (and no SDK looks elsewhere)."""
    with aws_env():
        yield


@pytest.fixture(scope="session")
def moto_s3(_aws_credentials):
    """One moto S3 server (127.0.0.1, free port) shared by the session's storage tests."""
    server = MotoS3()
    yield server
    server.stop()
