"""Real S3 servers for the tests, on 127.0.0.1 only: moto's in-process ``ThreadedMotoServer``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

#: credentials for the test servers; set before any store is built (obstore reads them from the
#: environment) and so that no AWS SDK looks for instance credentials off this machine.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "loomtest", "AWS_SECRET_ACCESS_KEY": "loomtestsecret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def aws_env() -> Iterator[None]:
    """The test credentials in ``os.environ`` for the duration (previous values restored)."""
    old = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class MotoS3:
    """A moto S3 server in this process on a free 127.0.0.1 port; :meth:`stop` takes it down."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.running = True

    def new_bucket(self, prefix: str = "loom") -> str:
        """Create a bucket with a fresh name and return it."""
        import boto3

        name = f"{prefix}-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        return name

    def raw_put(self, bucket: str, key: str, data: bytes) -> None:
        """Write an object behind Loom's back (unconditionally)."""
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").put_object(
            Bucket=bucket, Key=key, Body=data)

    def raw_get(self, bucket: str, key: str) -> bytes:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").get_object(
            Bucket=bucket, Key=key)["Body"].read()

    def raw_keys(self, bucket: str) -> list[str]:
        import boto3

        pages = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").get_paginator(
            "list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False
