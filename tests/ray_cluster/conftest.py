"""Fixtures of the cluster tests: a local Ray cluster on 127.0.0.1 (one per module), PostgreSQL databases.

Ray binds to the machine's address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (then 127.0.0.1): it is set
here, before Ray is imported, and inherited by every process Ray starts. The cluster is
``ray.init(address="local", num_cpus=2, num_gpus=1)`` (a logical GPU) and is shut down after its module;
``ray stop`` is never run (it would end other people's Ray processes).
"""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402

from tests.storage.s3server import AWS_ENV  # noqa: E402

# the moto server's test credentials, before any Ray process starts (replicas and tasks inherit them)
os.environ.update(AWS_ENV)

from tests.services.dbutil import create_pg_database, drop_pg_database, pg_url  # noqa: E402

LOCAL_CLUSTER = {"num_cpus": 2, "num_gpus": 1, "object_store_memory": 200 * 1024 * 1024}


@pytest.fixture(scope="module")
def ray_local():
    """This process joined to a fresh local Ray cluster (2 CPUs, 1 logical GPU); its RayConnection."""
    from hub.services.ray_cluster import RayConnection

    conn = RayConnection("local", init_kwargs=LOCAL_CLUSTER)
    conn.connect()
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def pg_database():
    """An empty PostgreSQL database for the module; its URL."""
    name = create_pg_database()
    yield pg_url(name)
    drop_pg_database(name)
