"""An archive reads back only as written: tampering, truncation and wrong keys are refused.

Archives here live in a temporary directory (``VolumeStorage``); the S3
round trips are in tests/integration/test_backup_storage.py.
"""

import dataclasses
import gzip
import json
import os
from pathlib import Path

import pytest

from tenantdb.core import errors
from tenantdb.core.backups import archive, encryption, storage
from tenantdb.core.backups.manifest import Manifest, TableSummary

UID = "4b0f7c9e-0000-4000-8000-000000000001"
LOCATION = "shop/acme/20260304T050607Z-b1"
PAYLOAD = os.urandom(300_000) + b"row\n" * 200_000


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
        schema_version=3,
        tables=[TableSummary("orders", 3, "abc")],
    )


def tenant_key() -> bytes:
    master = encryption.new_master_key()
    return encryption.unwrap_tenant_key(master, encryption.new_tenant_key(master, UID), UID)


def write(store: storage.Storage, compression: str = "zstd", key: bytes | None = None) -> Manifest:
    with archive.ArchiveWriter(store, LOCATION, compression=compression, tenant_key=key) as writer:
        for start in range(0, len(PAYLOAD), 70_000):
            writer.write(PAYLOAD[start : start + 70_000])
        return writer.finish(partial_manifest())


def read_back(reader: archive.ArchiveReader) -> bytes:
    reader.verify()
    with reader.payload() as payload:
        return payload.read()


@pytest.fixture
def store(tmp_path: Path) -> storage.VolumeStorage:
    return storage.VolumeStorage(tmp_path / "backups")


def data_path(store: storage.VolumeStorage) -> Path:
    return store.root / LOCATION / archive.DATA


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_round_trip_fills_in_the_storage_fields(
    store: storage.VolumeStorage, compression: str, encrypted: bool
) -> None:
    key = tenant_key() if encrypted else None
    final = write(store, compression, key)
    assert final.compression == compression
    assert final.encrypted is encrypted
    assert final.size_bytes == data_path(store).stat().st_size
    assert final.tables == partial_manifest().tables
    reader = archive.ArchiveReader(store, LOCATION, tenant_key=key)
    assert reader.verify() == final
    assert read_back(reader) == PAYLOAD
    stored = json.loads((store.root / LOCATION / archive.MANIFEST).read_bytes())
    assert stored["sha256"] == final.sha256


def test_unencrypted_gzip_archive_is_a_plain_gzip_file(store: storage.VolumeStorage) -> None:
    write(store, "gzip")
    assert gzip.decompress(data_path(store).read_bytes()) == PAYLOAD


def test_payload_reads_in_small_pieces(store: storage.VolumeStorage) -> None:
    key = tenant_key()
    write(store, "zstd", key)
    pieces = []
    with archive.ArchiveReader(store, LOCATION, tenant_key=key).payload() as payload:
        while piece := payload.read(1000):
            assert len(piece) <= 1000
            pieces.append(piece)
    assert b"".join(pieces) == PAYLOAD


def test_an_unfinished_writer_leaves_nothing(store: storage.VolumeStorage) -> None:
    with pytest.raises(RuntimeError), archive.ArchiveWriter(store, LOCATION) as writer:
        writer.write(PAYLOAD)
        raise RuntimeError("dump failed")
    assert store.keys("shop") == []
    with archive.ArchiveWriter(store, LOCATION) as writer:
        writer.write(PAYLOAD)
    assert store.keys("shop") == []
    assert not list(store.root.rglob("*.partial"))
    with pytest.raises(errors.ArchiveNotFound, match="no complete archive"):
        archive.ArchiveReader(store, LOCATION).verify()


def test_a_complete_archive_is_not_overwritten(store: storage.VolumeStorage) -> None:
    write(store)
    with pytest.raises(errors.ArchiveExists):
        write(store)


def test_data_without_manifest_is_not_an_archive(store: storage.VolumeStorage) -> None:
    write(store)
    (store.root / LOCATION / archive.MANIFEST).unlink()
    with pytest.raises(errors.ArchiveNotFound, match="no complete archive"):
        archive.ArchiveReader(store, LOCATION).verify()


@pytest.mark.parametrize("encrypted", [False, True])
def test_truncated_data_is_refused_before_any_payload(
    store: storage.VolumeStorage, encrypted: bool
) -> None:
    key = tenant_key() if encrypted else None
    write(store, "zstd", key)
    path = data_path(store)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(errors.ArchiveCorrupt, match="bytes, its manifest says"):
        archive.ArchiveReader(store, LOCATION, tenant_key=key).verify()


def test_flipped_byte_in_plain_data_fails_the_digest(store: storage.VolumeStorage) -> None:
    write(store, "none")
    flip(data_path(store), 1000)
    with pytest.raises(errors.ArchiveCorrupt, match="sha256"):
        archive.ArchiveReader(store, LOCATION).verify()


def test_flipped_byte_in_encrypted_data_fails_authentication(store: storage.VolumeStorage) -> None:
    key = tenant_key()
    write(store, "none", key)
    flip(data_path(store), encryption.HEADER_SIZE + encryption.SEGMENT_SIZE + 100)
    with pytest.raises(errors.ArchiveTampered, match="segment 1"):
        archive.ArchiveReader(store, LOCATION, tenant_key=key).verify()


def test_digest_is_checked_again_at_the_end_of_the_payload(store: storage.VolumeStorage) -> None:
    """Changed after ``verify``: the last read raises instead of ending quietly."""
    write(store, "none")
    reader = archive.ArchiveReader(store, LOCATION)
    reader.verify()
    flip(data_path(store), 10)
    with reader.payload() as payload, pytest.raises(errors.ArchiveCorrupt, match="sha256"):
        payload.read()


def test_modified_encrypted_manifest_is_refused(store: storage.VolumeStorage) -> None:
    key = tenant_key()
    write(store, "zstd", key)
    path = store.root / LOCATION / archive.MANIFEST
    path.write_bytes(path.read_bytes().replace(b'"rows":3', b'"rows":4'))
    with pytest.raises(errors.ArchiveTampered, match="manifest was modified"):
        archive.ArchiveReader(store, LOCATION, tenant_key=key).manifest()


def test_encrypted_manifest_without_its_tag_is_refused(store: storage.VolumeStorage) -> None:
    key = tenant_key()
    write(store, "zstd", key)
    (store.root / LOCATION / archive.MANIFEST_TAG).unlink()
    with pytest.raises(errors.ArchiveTampered, match="no tag"):
        archive.ArchiveReader(store, LOCATION, tenant_key=key).verify()


def test_encrypted_archive_needs_its_tenant_key(store: storage.VolumeStorage) -> None:
    write(store, "zstd", tenant_key())
    with pytest.raises(errors.EncryptionKeyMissing):
        archive.ArchiveReader(store, LOCATION).verify()
    with pytest.raises(errors.EncryptionKeyInvalid, match="another tenant key"):
        archive.ArchiveReader(store, LOCATION, tenant_key=tenant_key()).verify()


def test_plain_archive_is_refused_where_encryption_is_required(
    store: storage.VolumeStorage,
) -> None:
    """A forged unencrypted archive cannot stand in for an encrypted one."""
    write(store, "zstd")
    with pytest.raises(errors.ArchiveTampered, match="not encrypted"):
        archive.ArchiveReader(store, LOCATION, tenant_key=tenant_key()).verify()
    reader = archive.ArchiveReader(
        store, LOCATION, tenant_key=tenant_key(), require_encryption=False
    )
    assert read_back(reader) == PAYLOAD


def test_manifest_of_another_format_or_garbage_is_corrupt(store: storage.VolumeStorage) -> None:
    final = write(store)
    path = store.root / LOCATION / archive.MANIFEST
    path.write_bytes(dataclasses.replace(final, format_version=99).to_json())
    with pytest.raises(errors.ArchiveCorrupt, match="format"):
        archive.ArchiveReader(store, LOCATION).verify()
    path.write_bytes(b"{not json")
    with pytest.raises(errors.ArchiveCorrupt):
        archive.ArchiveReader(store, LOCATION).verify()


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(errors.ArchiveError, match="compression"):
        archive.ArchiveWriter(storage.VolumeStorage(Path("unused")), LOCATION, compression="lz4")


def flip(path: Path, offset: int) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0xFF
    path.write_bytes(bytes(content))
