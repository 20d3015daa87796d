"""The stored form of a payload byte stream: compressed, maybe encrypted, manifest last.

An archive is a directory (a ``storage`` location) holding:

* ``data``: the payload, compressed (``compression``), then, when a tenant
  key is given, encrypted (``encryption``: a header, then sealed segments);
* ``manifest.tag`` (encrypted archives only): the manifest's authentication tag;
* ``manifest.json``: the ``Manifest``, with the size and sha256 of ``data``.

``manifest.json`` is written last, so it marks a complete archive: an
interrupted backup never leaves anything a reader accepts. Readers check
everything (``verify``) before a restore creates anything, and check the
size and digest again while streaming the payload. Owns nothing about what
the payload means (``dumping``, ``restoring``) or where it is (``storage``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

from tenantdb.core import errors
from tenantdb.core.backups import compression, encryption, storage
from tenantdb.core.backups.manifest import Manifest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

DATA = "data"
MANIFEST = "manifest.json"
MANIFEST_TAG = "manifest.tag"
MAX_MANIFEST_SIZE = 16 * storage.MIB
"""A larger manifest is refused rather than read into memory."""
READ_SIZE = storage.MIB
"""Bytes per read of the stored data while verifying."""


class ArchiveWriter:
    """Writes one archive; use as a context manager, ``write`` the payload, then ``finish``.

    Leaving the block without ``finish`` (an exception, or a forgotten
    call) removes what was written. The memory used is one compression
    window, one encryption segment and the storage's part buffer, whatever
    the payload's size.
    """

    def __init__(
        self,
        store: storage.Storage,
        location: str,
        *,
        compression: str = "zstd",
        level: int | None = None,
        tenant_key: bytes | None = None,
    ) -> None:
        self._store = store
        self._location = location
        self._compression = _compression_kind(compression)
        self._level = level
        self._tenant_key = tenant_key
        self._stack = contextlib.ExitStack()
        self._out: _HashingSink | None = None
        self._finished = False

    def __repr__(self) -> str:
        return f"ArchiveWriter({self._location!r}, compression={self._compression!r})"

    def __enter__(self) -> Self:
        manifest_key = storage.object_key(self._location, MANIFEST)
        if self._store.exists(manifest_key):
            raise errors.ArchiveExists(f"an archive is already complete at {self._location}")
        self._compressor = compression.compressor(self._compression, self._level)
        self._sealer = None if self._tenant_key is None else encryption.Sealer(self._tenant_key)
        sink = self._stack.enter_context(
            self._store.writer(storage.object_key(self._location, DATA))
        )
        self._out = _HashingSink(sink)
        if self._sealer is not None:
            self._out.write(self._sealer.header)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._finished:
            return
        if exc is None:
            exc = errors.ArchiveError(f"the archive at {self._location} was not finished")
            exc_type = type(exc)
        self._stack.__exit__(exc_type, exc, traceback)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add raw payload bytes (any chunk size)."""
        compressed = self._compressor.compress(data if isinstance(data, bytes) else bytes(data))
        if compressed:
            self._emit(compressed)

    def finish(self, manifest: Manifest) -> Manifest:
        """Commit ``data``, then the manifest; return the manifest as stored.

        ``manifest`` is everything but the storage fields, which are filled
        in here: ``size_bytes``, ``sha256``, ``compression``, ``encrypted``.
        """
        out = self._require_open()
        self._emit(self._compressor.flush())
        if self._sealer is not None:
            out.write(self._sealer.finish())
        self._finished = True
        self._stack.close()
        final = dataclasses.replace(
            manifest,
            compression=self._compression,
            encrypted=self._sealer is not None,
            size_bytes=out.size,
            sha256=out.hexdigest(),
        )
        raw = final.to_json()
        try:
            if self._sealer is not None:
                self._put(MANIFEST_TAG, self._sealer.manifest_tag(raw))
            self._put(MANIFEST, raw)
        except BaseException:
            with contextlib.suppress(errors.StorageError):
                self._store.delete(self._location)
            raise
        return final

    def _emit(self, compressed: bytes) -> None:
        out = self._require_open()
        if self._sealer is None:
            out.write(compressed)
            return
        for sealed in self._sealer.seal(compressed):
            out.write(sealed)

    def _put(self, name: str, content: bytes) -> None:
        with self._store.writer(storage.object_key(self._location, name)) as sink:
            sink.write(content)

    def _require_open(self) -> _HashingSink:
        if self._out is None or self._finished:
            raise errors.ArchiveError("the archive writer is not open")
        return self._out


class ArchiveReader:
    """Reads one archive: its (authenticated) manifest, a full check, the payload.

    ``tenant_key`` opens encrypted archives. ``require_encryption``
    (default: whether a key was given) refuses an unencrypted archive, so
    that someone able to write to the storage cannot slip a forged plain
    archive in place of an encrypted one.
    """

    def __init__(
        self,
        store: storage.Storage,
        location: str,
        *,
        tenant_key: bytes | None = None,
        require_encryption: bool | None = None,
    ) -> None:
        self._store = store
        self._location = location
        self._tenant_key = tenant_key
        self._require_encryption = (
            tenant_key is not None if require_encryption is None else require_encryption
        )
        self._manifest: Manifest | None = None

    def __repr__(self) -> str:
        return f"ArchiveReader({self._location!r})"

    def manifest(self) -> Manifest:
        """The manifest, parsed and (for an encrypted archive) authenticated."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def verify(self) -> Manifest:
        """Read all of ``data`` once: size, sha256 and every authentication tag.

        Raises ``ArchiveCorrupt``, ``ArchiveTampered``, the key errors or
        ``ArchiveNotFound``; returns the manifest when the archive is whole.
        """
        manifest = self.manifest()
        data_key = self._key(DATA)
        stored_size = self._store.size(data_key)
        if stored_size != manifest.size_bytes:
            raise errors.ArchiveCorrupt(
                f"{data_key} has {stored_size} bytes, its manifest says {manifest.size_bytes}"
            )
        with self._store.reader(data_key) as source:
            stored = _HashingSource(source, manifest, data_key)
            layer = self._compressed_layer(manifest, stored)
            while layer.read(READ_SIZE):
                pass
            stored.check_end()
        return manifest

    @contextlib.contextmanager
    def payload(self) -> Iterator[Payload]:
        """The original payload bytes as a readable file object, streamed.

        The size and digest are checked again when the stream ends: an
        archive changed after ``verify`` makes the last ``read`` raise.
        """
        manifest = self.manifest()
        data_key = self._key(DATA)
        with self._store.reader(data_key) as source:
            stored = _HashingSource(source, manifest, data_key)
            layer = self._compressed_layer(manifest, stored)
            plain = compression.decompressing(manifest.compression, layer)

            def finish() -> None:
                if layer is not plain and layer.read(1):
                    raise errors.ArchiveCorrupt(f"bytes follow the payload in {data_key}")
                stored.check_end()

            yield Payload(plain, finish)

    def _read_manifest(self) -> Manifest:
        try:
            raw = self._read_small(MANIFEST)
        except errors.ArchiveNotFound as exc:
            raise errors.ArchiveNotFound(f"no complete archive at {self._location}") from exc
        try:
            manifest = Manifest.from_json(raw)
            compression.checked(manifest.compression)
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.ArchiveCorrupt(
                f"the manifest at {self._location} is invalid: {exc}"
            ) from exc
        if manifest.encrypted:
            opener = self._opener_from_header()
            try:
                tag = self._read_small(MANIFEST_TAG)
            except errors.ArchiveNotFound as exc:
                raise errors.ArchiveTampered(
                    f"the manifest at {self._location} has no tag"
                ) from exc
            opener.check_manifest(raw, tag)
        elif self._require_encryption:
            raise errors.ArchiveTampered(
                f"the archive at {self._location} is not encrypted; this tenant's archives must be"
            )
        return manifest

    def _opener_from_header(self) -> encryption.Opener:
        with self._store.reader(self._key(DATA)) as source:
            header = encryption.read_exactly(source, encryption.HEADER_SIZE)
        return self._opener(header)

    def _opener(self, header: bytes) -> encryption.Opener:
        if self._tenant_key is None:
            raise errors.EncryptionKeyMissing(
                f"the archive at {self._location} is encrypted and no tenant key was given"
            )
        return encryption.Opener(self._tenant_key, header)

    def _compressed_layer(self, manifest: Manifest, stored: _HashingSource) -> storage.Source:
        """What the compressor wrote: ``stored`` itself, or its decrypted segments."""
        if not manifest.encrypted:
            return stored
        opener = self._opener(encryption.read_exactly(stored, encryption.HEADER_SIZE))
        return _Chunks(opener.segments(stored))

    def _read_small(self, name: str) -> bytes:
        with self._store.reader(self._key(name)) as source:
            raw = encryption.read_exactly(source, MAX_MANIFEST_SIZE + 1)
        if len(raw) > MAX_MANIFEST_SIZE:
            raise errors.ArchiveCorrupt(
                f"{self._key(name)} is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        return raw

    def _key(self, name: str) -> str:
        return storage.object_key(self._location, name)


class Payload(io.RawIOBase):
    """A read-only file object over a payload; ``finish`` runs when it reaches its end."""

    def __init__(self, source: storage.Source, finish: Callable[[], None]) -> None:
        super().__init__()
        self._source = source
        self._finish: Callable[[], None] | None = finish

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if self._finish is None:
            return 0
        with memoryview(buffer) as view, view.cast("B") as target:
            data = self._source.read(len(target))
            if not data:
                finish, self._finish = self._finish, None
                finish()
                return 0
            target[: len(data)] = data
            return len(data)


class _HashingSink:
    """Counts and hashes the stored bytes on their way to storage."""

    def __init__(self, sink: storage.Sink) -> None:
        self._sink = sink
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._sha256.update(data)
        self.size += len(data)
        self._sink.write(data)

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class _HashingSource:
    """Counts and hashes the stored bytes as they are read, against the manifest."""

    def __init__(self, source: storage.Source, manifest: Manifest, key: str) -> None:
        self._source = source
        self._manifest = manifest
        self._key = key
        self._sha256 = hashlib.sha256()
        self._size = 0

    def read(self, size: int, /) -> bytes:
        data = self._source.read(size)
        self._sha256.update(data)
        self._size += len(data)
        if self._size > self._manifest.size_bytes:
            raise errors.ArchiveCorrupt(f"{self._key} is longer than its manifest says")
        return data

    def check_end(self) -> None:
        """At the end of the stream: the size and sha256 the manifest recorded."""
        if self._source.read(1):
            raise errors.ArchiveCorrupt(f"{self._key} is longer than its manifest says")
        if self._size != self._manifest.size_bytes:
            raise errors.ArchiveCorrupt(
                f"{self._key} has {self._size} bytes, its manifest says {self._manifest.size_bytes}"
            )
        if self._sha256.hexdigest() != self._manifest.sha256:
            raise errors.ArchiveCorrupt(f"the sha256 of {self._key} is not its manifest's")


class _Chunks:
    """``read(n)`` over an iterator of byte strings (the decrypted segments)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def read(self, size: int, /) -> bytes:
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._current = memoryview(chunk)
        data = bytes(self._current[:size])
        self._current = self._current[size:]
        return data


def _compression_kind(kind: str) -> str:
    try:
        return compression.checked(kind)
    except ValueError as exc:
        raise errors.ArchiveError(str(exc)) from exc
