"""The dev S3 server: it serves S3 with its keys, keeps buckets across restarts, stops cleanly."""

from __future__ import annotations

import stat
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tenantdb.devenv import objectstore, processes

pytestmark = pytest.mark.s3


def client(endpoint: objectstore.Endpoint, secret: str | None = None) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=secret or endpoint.secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_serves_s3_on_loopback_with_generated_keys(tmp_path: Path) -> None:
    with objectstore.ObjectStore(tmp_path) as store:
        endpoint = store.endpoint
        assert endpoint.url.startswith(f"http://{processes.LOOPBACK}:")
        assert endpoint.secret_access_key not in repr(endpoint)
        bucket = store.create_bucket("dev-bucket")
        s3 = client(endpoint)
        s3.put_object(Bucket=bucket, Key="a/b", Body=b"hello")
        assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"hello"
        with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
            client(endpoint, secret="wrong").get_object(Bucket=bucket, Key="a/b")
        for name in ("access-key", "secret-key"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_restart_keeps_keys_and_buckets_and_stop_ends_the_process(tmp_path: Path) -> None:
    with objectstore.ObjectStore(tmp_path) as store:
        first = store.endpoint
        store.create_bucket("kept-bucket")
        client(first).put_object(Bucket="kept-bucket", Key="k", Body=b"v")
    store = objectstore.ObjectStore(tmp_path)
    store.start()
    try:
        second = store.endpoint
        pid = store._child.pid if store._child else 0
        assert second.access_key_id == first.access_key_id
        assert second.secret_access_key == first.secret_access_key
        assert client(second).get_object(Bucket="kept-bucket", Key="k")["Body"].read() == b"v"
        assert store.create_bucket("kept-bucket", exist_ok=True) == "kept-bucket"
    finally:
        store.stop()
    assert not processes.pid_alive(pid)
    with pytest.raises(processes.DevEnvError, match="not running"):
        _ = store.endpoint
