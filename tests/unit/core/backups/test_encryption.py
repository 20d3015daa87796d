"""Key wrapping and segment framing: what the wrong key, a swap, a cut or an extra byte do."""

import io

import pytest

from tenantdb.core import errors
from tenantdb.core.backups import encryption

UID = "4b0f7c9e-0000-4000-8000-000000000001"
OTHER_UID = "4b0f7c9e-0000-4000-8000-000000000002"
SEGMENT = 64


def tenant_key() -> bytes:
    master = encryption.new_master_key()
    return encryption.unwrap_tenant_key(master, encryption.new_tenant_key(master, UID), UID)


def sealed_stream(key: bytes, plaintext: bytes, chunk: int = 10) -> tuple[bytes, list[bytes]]:
    """The header and the stored segments of ``plaintext`` written ``chunk`` bytes at a time."""
    sealer = encryption.Sealer(key, segment_size=SEGMENT)
    segments = []
    for start in range(0, len(plaintext), chunk):
        segments += sealer.seal(plaintext[start : start + chunk])
    segments.append(sealer.finish())
    return sealer.header, segments


def opened(key: bytes, header: bytes, segments: list[bytes]) -> bytes:
    return b"".join(encryption.Opener(key, header).segments(io.BytesIO(b"".join(segments))))


def test_tenant_key_round_trips_and_is_fresh_each_time() -> None:
    master = encryption.new_master_key()
    wrapped = encryption.new_tenant_key(master, UID)
    key = encryption.unwrap_tenant_key(master, wrapped, UID)
    assert len(key) == encryption.KEY_SIZE
    assert key not in wrapped
    again = encryption.unwrap_tenant_key(master, encryption.new_tenant_key(master, UID), UID)
    assert again != key


def test_tenant_key_does_not_open_with_another_master_key() -> None:
    wrapped = encryption.new_tenant_key(encryption.new_master_key(), UID)
    with pytest.raises(errors.EncryptionKeyInvalid, match="master key"):
        encryption.unwrap_tenant_key(encryption.new_master_key(), wrapped, UID)


def test_tenant_key_is_bound_to_its_tenant() -> None:
    master = encryption.new_master_key()
    wrapped = encryption.new_tenant_key(master, UID)
    with pytest.raises(errors.EncryptionKeyInvalid):
        encryption.unwrap_tenant_key(master, wrapped, OTHER_UID)


@pytest.mark.parametrize("wrapped", [b"", b"\x02" + bytes(60), bytes(10)])
def test_malformed_wrapped_key_is_refused(wrapped: bytes) -> None:
    with pytest.raises(errors.EncryptionKeyInvalid, match="format"):
        encryption.unwrap_tenant_key(encryption.new_master_key(), wrapped, UID)


def test_keys_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(errors.EncryptionKeyInvalid, match="32 bytes"):
        encryption.new_tenant_key(b"short", UID)
    with pytest.raises(errors.EncryptionKeyInvalid, match="32 bytes"):
        encryption.Sealer(b"x" * 16)


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT, 5 * SEGMENT + 7]
)
def test_segments_round_trip_at_every_boundary(size: int) -> None:
    key = tenant_key()
    plaintext = bytes(range(256)) * (size // 256 + 1)
    plaintext = plaintext[:size]
    header, segments = sealed_stream(key, plaintext)
    assert len(header) == encryption.HEADER_SIZE
    assert all(len(s) == SEGMENT + encryption.TAG_SIZE for s in segments[:-1])
    assert len(segments[-1]) < SEGMENT + encryption.TAG_SIZE
    assert opened(key, header, segments) == plaintext


def test_ciphertext_hides_the_plaintext_and_differs_between_archives() -> None:
    key = tenant_key()
    plaintext = b"secret row " * 20
    first = sealed_stream(key, plaintext)
    second = sealed_stream(key, plaintext)
    assert b"secret row" not in first[0] + b"".join(first[1])
    assert first[1] != second[1]


def test_wrong_tenant_key_is_told_apart_from_tampering() -> None:
    header, segments = sealed_stream(tenant_key(), b"payload" * 30)
    with pytest.raises(errors.EncryptionKeyInvalid, match="another tenant key"):
        opened(tenant_key(), header, segments)


@pytest.mark.parametrize("offset", [8, 12, 20, 28, 40, encryption.HEADER_SIZE - 1])
def test_modified_header_fails(offset: int) -> None:
    key = tenant_key()
    header, segments = sealed_stream(key, b"payload" * 30)
    changed = bytearray(header)
    changed[offset] ^= 1
    with pytest.raises((errors.ArchiveTampered, errors.EncryptionKeyInvalid)):
        opened(key, bytes(changed), segments)


def test_flipped_bit_in_a_segment_fails() -> None:
    key = tenant_key()
    header, segments = sealed_stream(key, b"x" * (3 * SEGMENT))
    changed = bytearray(segments[1])
    changed[5] ^= 0x80
    segments[1] = bytes(changed)
    with pytest.raises(errors.ArchiveTampered, match="segment 1"):
        opened(key, header, segments)


def test_reordered_segments_fail() -> None:
    key = tenant_key()
    header, segments = sealed_stream(key, bytes(range(200)) * 2)
    segments[0], segments[1] = segments[1], segments[0]
    with pytest.raises(errors.ArchiveTampered, match="segment 0"):
        opened(key, header, segments)


def test_dropping_the_last_segment_is_a_truncation() -> None:
    """Cut at a segment boundary: every remaining segment is intact, but none says it is last."""
    key = tenant_key()
    header, segments = sealed_stream(key, b"y" * (3 * SEGMENT + 5))
    with pytest.raises(errors.ArchiveTampered, match="segment 3"):
        opened(key, header, segments[:-1])


def test_cut_inside_a_segment_fails() -> None:
    key = tenant_key()
    header, segments = sealed_stream(key, b"y" * (3 * SEGMENT + 5))
    stored = b"".join(segments)
    cut = stored[: len(stored) - 30]
    with pytest.raises(errors.ArchiveTampered):
        opened(key, header, [cut])


def test_appended_bytes_or_segments_fail() -> None:
    key = tenant_key()
    header, segments = sealed_stream(key, b"z" * (2 * SEGMENT + 3))
    with pytest.raises(errors.ArchiveTampered):
        opened(key, header, [*segments, b"\x00"])
    with pytest.raises(errors.ArchiveTampered):
        opened(key, header, [*segments, segments[0]])


def test_segments_of_another_archive_under_the_same_key_fail() -> None:
    key = tenant_key()
    header, segments = sealed_stream(key, b"a" * (2 * SEGMENT))
    _, foreign = sealed_stream(key, b"a" * (2 * SEGMENT))
    with pytest.raises(errors.ArchiveTampered, match="segment 0"):
        opened(key, header, [foreign[0], *segments[1:]])


def test_manifest_tag_detects_any_change() -> None:
    key = tenant_key()
    sealer = encryption.Sealer(key)
    manifest = b'{"rows":3}'
    tag = sealer.manifest_tag(manifest)
    opener = encryption.Opener(key, sealer.header)
    opener.check_manifest(manifest, tag)
    with pytest.raises(errors.ArchiveTampered, match="manifest"):
        opener.check_manifest(b'{"rows":4}', tag)
    other = encryption.Sealer(key)
    with pytest.raises(errors.ArchiveTampered, match="manifest"):
        encryption.Opener(key, other.header).check_manifest(manifest, tag)


def test_data_that_is_not_an_encrypted_archive_is_corrupt() -> None:
    with pytest.raises(errors.ArchiveCorrupt, match="header"):
        encryption.Opener(tenant_key(), b"\x1f\x8b" + bytes(encryption.HEADER_SIZE - 2))
