"""Archives on a real directory and a real S3 server (versitygw): round trips and failures.

Failures are real too: an aborted upload, a read-only or full filesystem
(a tmpfs mounted in a private mount namespace when we may, a file-size
limit otherwise), a port nothing listens on, wrong credentials.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tenantdb.core import errors
from tenantdb.core.backups import archive, encryption, s3, storage
from tenantdb.core.backups.manifest import Manifest
from tenantdb.devenv import objectstore, processes
from tests.conftest import S3Server

UID = "4b0f7c9e-0000-4000-8000-000000000001"
LOCATION = "shop/acme/20260304T050607Z-b1"
MIB = 1024 * 1024
LARGE_STREAM = 200 * MIB
PEAK_LIMIT = 64 * MIB
"""What a backup of any size may add to the process's memory."""


def partial_manifest() -> Manifest:
    return Manifest(
        tenant="acme",
        namespace="shop",
        tenant_uid=UID,
        isolation="schema",
        payload="tenantdb-rows",
        server_version=180000,
        tool_version="0.1.0",
        started_at="2026-03-04T05:06:07Z",
        completed_at="2026-03-04T05:06:09Z",
        schema_version=None,
    )


def tenant_key() -> bytes:
    master = encryption.new_master_key()
    return encryption.unwrap_tenant_key(master, encryption.new_tenant_key(master, UID), UID)


def s3_storage(server: S3Server, bucket: str, **overrides: object) -> s3.S3Storage:
    settings: dict[str, object] = {
        "bucket": bucket,
        "prefix": "tenantdb/backups",
        "endpoint": server.endpoint.url,
        "region": server.endpoint.region,
        "access_key_id": server.endpoint.access_key_id,
        "secret_access_key": server.endpoint.secret_access_key,
        "path_style": True,
    }
    settings.update(overrides)
    return s3.S3Storage(**settings)


def raw_client(server: S3Server) -> object:
    endpoint = server.endpoint
    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(params=["volume", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> storage.Storage:
    """A volume directory, or a fresh bucket on the session's S3 server."""
    if request.param == "volume":
        return storage.VolumeStorage(tmp_path / "backups")
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_storage(server, server.new_bucket())


def chunks(total: int, seed: int = 7, size: int = MIB) -> Iterator[bytes]:
    """``total`` bytes of half-compressible data, generated as they are needed."""
    generator = random.Random(seed)
    for start in range(0, total, size):
        length = min(size, total - start)
        noise = generator.randbytes(length // 2)
        yield noise + bytes(length - len(noise))


def write(store: storage.Storage, payload: Iterator[bytes], **options: object) -> Manifest:
    with archive.ArchiveWriter(store, LOCATION, **options) as writer:
        for chunk in payload:
            writer.write(chunk)
        return writer.finish(partial_manifest())


def payload_digest(reader: archive.ArchiveReader, read_size: int = MIB) -> str:
    digest = hashlib.sha256()
    with reader.payload() as payload:
        while chunk := payload.read(read_size):
            digest.update(chunk)
    return digest.hexdigest()


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for chunk in chunks(total):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_round_trip(store: storage.Storage, compression: str, encrypted: bool) -> None:
    """More than one S3 part of stored bytes, read back byte for byte."""
    key = tenant_key() if encrypted else None
    total = 20 * MIB
    final = write(store, chunks(total), compression=compression, tenant_key=key)
    assert store.size(storage.object_key(LOCATION, archive.DATA)) == final.size_bytes
    assert final.size_bytes > s3.PART_SIZE
    expected = {archive.DATA, archive.MANIFEST} | ({archive.MANIFEST_TAG} if encrypted else set())
    assert store.keys(LOCATION) == sorted(f"{LOCATION}/{name}" for name in expected)
    reader = archive.ArchiveReader(store, LOCATION, tenant_key=key)
    assert reader.verify() == final
    assert payload_digest(reader, read_size=100_000) == expected_digest(total)


def test_empty_payload_round_trips(store: storage.Storage) -> None:
    key = tenant_key()
    final = write(store, iter(()), compression="none", tenant_key=key)
    reader = archive.ArchiveReader(store, LOCATION, tenant_key=key)
    assert reader.verify() == final
    with reader.payload() as payload:
        assert payload.read() == b""


def test_large_stream_keeps_memory_flat(store: storage.Storage) -> None:
    """200 MiB through compression, encryption and storage, then verified and read back."""
    key = tenant_key()
    with peak_memory() as peaks:
        final = write(store, chunks(LARGE_STREAM), compression="zstd", tenant_key=key)
        reader = archive.ArchiveReader(store, LOCATION, tenant_key=key)
        reader.verify()
        digest = payload_digest(reader)
    assert final.size_bytes > LARGE_STREAM // 3
    assert digest == expected_digest(LARGE_STREAM)
    assert peaks["python"] < PEAK_LIMIT, peaks
    assert peaks["rss"] < PEAK_LIMIT, peaks


def test_aborted_volume_writer_leaves_nothing(tmp_path: Path) -> None:
    store = storage.VolumeStorage(tmp_path / "backups")
    with pytest.raises(RuntimeError, match="dump died"):
        write(store, failing_after(20 * MIB))
    assert store.keys("shop") == []
    assert not [path for path in store.root.rglob("*") if path.is_file()]


@pytest.mark.s3
def test_aborted_s3_writer_leaves_no_object_and_no_upload(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    store = s3_storage(s3_server, bucket)
    with pytest.raises(RuntimeError, match="dump died"):
        write(store, failing_after(20 * MIB), compression="none")
    client = raw_client(s3_server)
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(errors.ArchiveNotFound):
        archive.ArchiveReader(store, LOCATION).verify()


def test_delete_removes_a_tenant_and_nothing_else(store: storage.Storage) -> None:
    for location in ("shop/acme/t1-a", "shop/acme/t2-b", "shop/acme-two/t1-c", "other/acme/t1-d"):
        with archive.ArchiveWriter(store, location, compression="gzip") as writer:
            writer.write(b"rows")
            writer.finish(partial_manifest())
    assert store.delete(storage.tenant_location("shop", "acme")) == 4
    assert store.keys("shop/acme") == []
    assert len(store.keys("shop/acme-two")) == 2
    assert len(store.keys("other")) == 2
    assert store.delete("shop/acme") == 0
    if isinstance(store, storage.VolumeStorage):
        assert not (store.root / "shop" / "acme").exists()


@pytest.mark.s3
def test_delete_aborts_unfinished_uploads_under_the_prefix(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    store = s3_storage(s3_server, bucket)
    client = raw_client(s3_server)
    client.create_multipart_upload(Bucket=bucket, Key="tenantdb/backups/shop/acme/t1-a/data")
    client.create_multipart_upload(Bucket=bucket, Key="tenantdb/backups/shop/kept/t1-a/data")
    store.delete("shop/acme")
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [upload["Key"] for upload in uploads] == ["tenantdb/backups/shop/kept/t1-a/data"]


def test_missing_objects_are_archive_not_found(store: storage.Storage) -> None:
    key = storage.object_key(LOCATION, archive.DATA)
    assert not store.exists(key)
    with pytest.raises(errors.ArchiveNotFound):
        store.size(key)
    with pytest.raises(errors.ArchiveNotFound), store.reader(key):
        pass
    assert store.keys("nothing/here") == []


@pytest.mark.s3
def test_s3_prefix_keeps_objects_apart(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    first = s3_storage(s3_server, bucket, prefix="one")
    second = s3_storage(s3_server, bucket, prefix="two/")
    write(first, iter([b"x"]))
    assert first.keys("shop") == sorted(f"{LOCATION}/{n}" for n in (archive.DATA, archive.MANIFEST))
    assert second.keys("shop") == []
    assert second.delete("shop") == 0
    assert first.exists(storage.object_key(LOCATION, archive.MANIFEST))


def test_unwritable_directory_is_denied_before_any_data(tmp_path: Path) -> None:
    root = tmp_path / "backups"
    root.mkdir()
    if os.geteuid() != 0:
        root.chmod(0o500)
        try:
            with pytest.raises(errors.StorageDenied, match="cannot create"):
                write(storage.VolumeStorage(root), must_not_be_read())
        finally:
            root.chmod(0o700)
        return
    # Root ignores permission bits: a read-only filesystem refuses even root.
    result = in_private_tmpfs(root, "ro,size=1m", 1 * MIB)
    assert result["error"] == "StorageDenied", result
    assert "Read-only file system" in result["message"]


def test_full_filesystem_is_storage_full_and_leaves_nothing(tmp_path: Path) -> None:
    """A 4 MiB tmpfs (root, in a private mount namespace) fills up with ENOSPC."""
    root = tmp_path / "backups"
    root.mkdir()
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a tmpfs needs root; the file-size limit test covers StorageFull")
    result = in_private_tmpfs(root, "size=4m", 16 * MIB)
    assert result["error"] == "StorageFull", result
    assert result["reason"] == "StorageFull"
    assert "No space left on device" in result["message"]
    assert result["files"] == []


def test_file_size_limit_is_storage_full_and_leaves_nothing(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes write() fail with EFBIG, as a quota would, for any user."""
    root = tmp_path / "backups"
    root.mkdir()
    result = run_writer(root, 16 * MIB, file_size_limit=2 * MIB)
    assert result["error"] == "StorageFull", result
    assert "File too large" in result["message"]
    assert result["files"] == []


@pytest.mark.s3
def test_unreachable_endpoint(s3_server: S3Server) -> None:
    store = s3_storage(s3_server, "anything", endpoint=f"http://127.0.0.1:{processes.free_port()}")
    with pytest.raises(errors.StorageUnreachable) as caught:
        write(store, must_not_be_read())
    assert caught.value.reason == "StorageUnreachable"
    assert caught.value.permanent is False


@pytest.mark.s3
def test_server_gone_mid_upload_is_unreachable(tmp_path: Path) -> None:
    """A part upload failing in the background surfaces in the writer, as StorageUnreachable."""
    server = objectstore.ObjectStore(tmp_path / "s3")
    server.start()
    try:
        endpoint = server.endpoint
        bucket = server.create_bucket("short-lived")
        store = s3.S3Storage(
            bucket,
            endpoint=endpoint.url,
            access_key_id=endpoint.access_key_id,
            secret_access_key=endpoint.secret_access_key,
            path_style=True,
        )

        def payload() -> Iterator[bytes]:
            yield from chunks(3 * s3.PART_SIZE)
            server.stop()
            yield from chunks(3 * s3.PART_SIZE, seed=8)

        with pytest.raises(errors.StorageUnreachable, match=r"part|complete"):
            write(store, payload(), compression="none")
    finally:
        server.stop()


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["secret_access_key", "access_key_id"])
def test_wrong_credentials_are_denied_without_leaking_them(s3_server: S3Server, wrong: str) -> None:
    bucket = s3_server.new_bucket()
    secret = "not-the-secret-" + os.urandom(8).hex()
    store = s3_storage(s3_server, bucket, **{wrong: secret})
    with pytest.raises(errors.StorageDenied) as caught:
        write(store, must_not_be_read())
    message = str(caught.value)
    for credential in (secret, s3_server.endpoint.secret_access_key, store.access_key_id or ""):
        assert credential not in message
        assert credential not in repr(store)
    with pytest.raises(errors.StorageDenied):
        archive.ArchiveReader(store, LOCATION).verify()


@pytest.mark.s3
def test_missing_bucket_is_denied(s3_server: S3Server) -> None:
    store = s3_storage(s3_server, "no-such-bucket-here")
    with pytest.raises(errors.StorageDenied, match="NoSuchBucket"):
        write(store, must_not_be_read())


@pytest.mark.s3
def test_tampered_s3_manifest_is_refused(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    store = s3_storage(s3_server, bucket)
    key = tenant_key()
    write(store, chunks(MIB), tenant_key=key)
    client = raw_client(s3_server)
    manifest_key = f"tenantdb/backups/{LOCATION}/{archive.MANIFEST}"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    manifest["tenant"] = "someone-else"
    client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    with pytest.raises(errors.ArchiveTampered, match="manifest was modified"):
        archive.ArchiveReader(store, LOCATION, tenant_key=key).verify()


# ---------------------------------------------------------------------------
# helpers


def failing_after(total: int) -> Iterator[bytes]:
    yield from chunks(total)
    raise RuntimeError("dump died")


def must_not_be_read() -> Iterator[bytes]:
    """A payload whose first chunk fails the test: the storage error comes first."""
    raise AssertionError("the writer read the payload although its storage is unusable")
    yield b""  # pragma: no cover


@contextmanager
def peak_memory() -> Iterator[dict[str, int]]:
    """Peak growth of Python allocations (tracemalloc) and of the process's RSS (VmHWM)."""
    peaks: dict[str, int] = {}
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    rss_before = _status_kib("VmRSS") * 1024
    tracemalloc.start()
    try:
        yield peaks
    finally:
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks["python"] = python_peak
        peaks["rss"] = _status_kib("VmHWM") * 1024 - rss_before


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


WRITER_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    from pathlib import Path
    from tenantdb.core import errors
    from tenantdb.core.backups import archive, storage
    from tenantdb.core.backups.manifest import Manifest

    root, size, limit = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    manifest = Manifest("acme", "shop", "u", "schema", "tenantdb-rows", 180000, "0", "", "", None)
    result = {"error": None}
    try:
        with archive.ArchiveWriter(
            storage.VolumeStorage(root), "shop/acme/t-1", compression="none"
        ) as writer:
            for _ in range(size // 65536):
                writer.write(os.urandom(65536))
            writer.finish(manifest)
    except errors.TenantDBError as exc:
        result = {"error": type(exc).__name__, "reason": exc.reason, "message": str(exc)}
    result["files"] = sorted(str(p) for p in root.rglob("*") if p.is_file())
    print(json.dumps(result))
    """
)


def run_writer(
    root: Path, size: int, *, file_size_limit: int = 0, prefix: tuple[str, ...] = ()
) -> dict[str, str]:
    """Write an archive of ``size`` bytes in a child process; what it raised and left."""
    completed = subprocess.run(
        [*prefix, sys.executable, "-c", WRITER_SCRIPT, str(root), str(size), str(file_size_limit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def in_private_tmpfs(root: Path, options: str, size: int) -> dict[str, str]:
    """``run_writer`` over a tmpfs mounted on ``root`` in a mount namespace of its own.

    The mount lives and dies with the child: nothing is left mounted on the
    machine, whatever happens to the test.
    """
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(
        ["unshare", "--mount", "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(root)],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && shift && exec "$@"'
    prefix = ("unshare", "--mount", "sh", "-c", script, "sh", str(root))
    return run_writer(root, size, prefix=prefix)
