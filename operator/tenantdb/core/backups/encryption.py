"""Authenticated encryption of archives (AES-256-GCM, streamed) and the keys behind it.

Owns the key hierarchy and the encrypted framing, nothing about storage:

* a *master key* (32 bytes, a Secret the controller reads) wraps one
  *tenant key* per tenant, bound to the tenant's uid;
* each archive has a random *content key*, wrapped by the tenant key in the
  archive's header; keys for the data and for the manifest's tag are
  derived from it.

Deleting a tenant's wrapped key therefore makes every archive of that
tenant unreadable (crypto-shredding), wherever copies of them went.

The data after the header is a sequence of segments: ``SEGMENT_SIZE``
bytes of plaintext each (the last shorter, possibly empty), each sealed
with a nonce made of the archive's random prefix and the segment's index,
and associated data naming that index and whether it is the last. So a
reordered, dropped, truncated or appended segment fails authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tenantdb.core import errors
from tenantdb.core.backups import storage

KEY_SIZE = 32
"""Bytes of every key: master, tenant and content keys are all AES-256."""
SEGMENT_SIZE = storage.MIB
"""Plaintext bytes per segment: the encryption buffer, and the reader's."""
TAG_SIZE = 16
_NONCE_SIZE = 12

_TENANT_KEY_VERSION = b"\x01"
_TENANT_KEY_SIZE = 1 + _NONCE_SIZE + KEY_SIZE + TAG_SIZE
_MAGIC = b"TDBENC\x00\x01"
"""Starts an encrypted data object; the last byte is the framing version."""
_FIXED = struct.Struct(">8sI8s8s")
"""Magic, segment size, tenant key id, nonce prefix: authenticated with the content key."""
_WRAPPED_CONTENT_KEY_SIZE = _NONCE_SIZE + KEY_SIZE + TAG_SIZE
HEADER_SIZE = _FIXED.size + _WRAPPED_CONTENT_KEY_SIZE
"""Bytes of the header that starts an encrypted data object."""


def new_master_key() -> bytes:
    """A fresh master key, for the Secret that holds it."""
    return secrets.token_bytes(KEY_SIZE)


def new_tenant_key(master: bytes, tenant_uid: str) -> bytes:
    """A fresh tenant key, wrapped by ``master``: what the tenant's Secret keeps."""
    nonce = secrets.token_bytes(_NONCE_SIZE)
    sealed = AESGCM(_checked(master, "master")).encrypt(
        nonce, secrets.token_bytes(KEY_SIZE), _tenant_aad(tenant_uid)
    )
    return _TENANT_KEY_VERSION + nonce + sealed


def unwrap_tenant_key(master: bytes, wrapped: bytes, tenant_uid: str) -> bytes:
    """The tenant key in ``wrapped``; fails if the master key or the tenant is another."""
    if len(wrapped) != _TENANT_KEY_SIZE or wrapped[:1] != _TENANT_KEY_VERSION:
        raise errors.EncryptionKeyInvalid("the wrapped tenant key has an unknown format")
    nonce, sealed = wrapped[1 : 1 + _NONCE_SIZE], wrapped[1 + _NONCE_SIZE :]
    try:
        return AESGCM(_checked(master, "master")).decrypt(nonce, sealed, _tenant_aad(tenant_uid))
    except InvalidTag as exc:
        raise errors.EncryptionKeyInvalid(
            "the tenant key does not open with this master key (another master key, or the"
            " key of another tenant)"
        ) from exc


class Sealer:
    """Encrypts one archive's stored stream: the header, then sealed segments.

    ``seal`` buffers at most one segment; ``finish`` seals the last one.
    """

    def __init__(self, tenant_key: bytes, segment_size: int = SEGMENT_SIZE) -> None:
        content_key = secrets.token_bytes(KEY_SIZE)
        self._prefix = secrets.token_bytes(_NONCE_SIZE - 4)
        fixed = _FIXED.pack(_MAGIC, segment_size, _key_id(tenant_key), self._prefix)
        nonce = secrets.token_bytes(_NONCE_SIZE)
        wrapped = AESGCM(_checked(tenant_key, "tenant")).encrypt(nonce, content_key, fixed)
        self.header = fixed + nonce + wrapped
        """Starts the data object: the wrapped content key and the framing parameters."""
        self._data = AESGCM(_derive(content_key, b"data"))
        self._manifest_key = _derive(content_key, b"manifest")
        self._segment_size = segment_size
        self._index = 0
        self._pending = bytearray()

    def seal(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Sealed segments completed by ``data`` (often none)."""
        size = self._segment_size
        self._pending += data
        sealed = []
        while len(self._pending) >= size:
            with memoryview(self._pending) as view:
                sealed.append(self._seal(view[:size], final=False))
            del self._pending[:size]
        return sealed

    def finish(self) -> bytes:
        """The last segment: what is buffered (shorter than a segment, maybe empty)."""
        last = self._seal(bytes(self._pending), final=True)
        self._pending.clear()
        return last

    def manifest_tag(self, manifest: bytes) -> bytes:
        """Authenticates the manifest under this archive's content key."""
        return _manifest_tag(self._manifest_key, manifest)

    def _seal(self, plaintext: bytes | memoryview, final: bool) -> bytes:
        nonce = self._prefix + struct.pack(">I", self._index)
        sealed = self._data.encrypt(nonce, plaintext, _segment_aad(self._index, final))
        self._index += 1
        return sealed


class Opener:
    """Opens an archive sealed under ``tenant_key``, given its header."""

    def __init__(self, tenant_key: bytes, header: bytes) -> None:
        if len(header) != HEADER_SIZE or not header.startswith(_MAGIC):
            raise errors.ArchiveCorrupt("the data does not start with an encrypted archive header")
        fixed = header[: _FIXED.size]
        _, self._segment_size, key_id, self._prefix = _FIXED.unpack(fixed)
        if not hmac.compare_digest(key_id, _key_id(_checked(tenant_key, "tenant"))):
            raise errors.EncryptionKeyInvalid("the archive was encrypted under another tenant key")
        nonce, wrapped = (
            header[_FIXED.size : _FIXED.size + _NONCE_SIZE],
            header[_FIXED.size + _NONCE_SIZE :],
        )
        try:
            content_key = AESGCM(tenant_key).decrypt(nonce, wrapped, fixed)
        except InvalidTag as exc:
            raise errors.ArchiveTampered("the archive header was modified") from exc
        self._data = AESGCM(_derive(content_key, b"data"))
        self._manifest_key = _derive(content_key, b"manifest")

    def check_manifest(self, manifest: bytes, tag: bytes) -> None:
        """Refuse a manifest whose tag was not made with this archive's content key."""
        if not hmac.compare_digest(tag, _manifest_tag(self._manifest_key, manifest)):
            raise errors.ArchiveTampered("the manifest was modified")

    def segments(self, source: storage.Source) -> Iterator[bytes]:
        """The plaintext of each segment read from ``source`` (positioned after the header).

        A full-size segment is never the last one: the writer always ends
        with a shorter one, so an end after a full segment is a truncation.
        """
        stored_size = self._segment_size + TAG_SIZE
        index = 0
        while True:
            sealed = read_exactly(source, stored_size)
            final = len(sealed) < stored_size
            if final and len(sealed) < TAG_SIZE:
                raise errors.ArchiveTampered(f"the archive ends inside segment {index}")
            nonce = self._prefix + struct.pack(">I", index)
            try:
                yield self._data.decrypt(nonce, sealed, _segment_aad(index, final))
            except InvalidTag as exc:
                raise errors.ArchiveTampered(
                    f"segment {index} fails authentication (modified, reordered or truncated)"
                ) from exc
            if final:
                if source.read(1):
                    raise errors.ArchiveTampered("bytes follow the archive's last segment")
                return
            index += 1


def read_exactly(source: storage.Source, size: int) -> bytes:
    """``size`` bytes from ``source``, fewer only at its end."""
    data = source.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing:
        more = source.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _checked(key: bytes, what: str) -> bytes:
    if len(key) != KEY_SIZE:
        raise errors.EncryptionKeyInvalid(f"a {what} key has {KEY_SIZE} bytes, not {len(key)}")
    return key


def _tenant_aad(tenant_uid: str) -> bytes:
    return b"tenantdb/tenant-key/v1\x00" + tenant_uid.encode()


def _segment_aad(index: int, final: bool) -> bytes:
    return b"tenantdb/segment/v1\x00" + struct.pack(">Q?", index, final)


def _key_id(tenant_key: bytes) -> bytes:
    """Names a tenant key without revealing it, so a wrong key is told from a modified header."""
    return hmac.digest(tenant_key, b"tenantdb/key-id/v1", hashlib.sha256)[:8]


def _derive(content_key: bytes, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=b"tenantdb/" + purpose)
    return hkdf.derive(content_key)


def _manifest_tag(key: bytes, manifest: bytes) -> bytes:
    return hmac.digest(key, b"tenantdb/manifest/v1\x00" + manifest, hashlib.sha256)
