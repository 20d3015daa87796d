"""Compression of an archive's payload: ``gzip`` (ISA-L), ``zstd`` (zstandard) or ``none``.

gzip is written with Intel's ISA-L (the ``isal`` package): the same gzip
format zlib reads (``zcat`` opens an unencrypted archive), several times
faster than zlib at a similar ratio, so that a gzip backup keeps up with
``pg_dump -Fc`` while the operator also checksums every table. ISA-L has four
levels; the API's 1-9 map onto 1-3 (``_isal_level``).

Owns the codecs on both sides and their failures: a compressed stream that
does not decode raises ``ArchiveCorrupt``. Decoding is bounded by what the
reader asks for, so a small, highly compressed input never expands into
memory all at once.
"""

from __future__ import annotations

import zlib
from typing import IO, Protocol, cast

import zstandard
from isal import igzip_lib, isal_zlib

from tenantdb.core import errors
from tenantdb.core.backups import storage

KINDS = ("zstd", "gzip", "none")
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6}
"""zstd 3 compresses about as well as gzip 6, several times faster."""
_GZIP_WBITS = 31
"""zlib's window bits for the gzip container (so ``zcat`` reads an unencrypted archive)."""
_READ_SIZE = 256 * 1024
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    cast(type[Exception], igzip_lib.IsalError),  # its stubs call it an instance
    zlib.error,
)


class Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes, /) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def compressor(kind: str, level: int | None = None) -> Compressor:
    """A streaming compressor: ``compress`` chunks, then ``flush`` once."""
    checked(kind)
    if kind == "none":
        return _Identity()
    chosen = DEFAULT_LEVELS[kind] if level is None else level
    if kind == "gzip":
        return cast(
            Compressor,
            isal_zlib.compressobj(_isal_level(chosen), isal_zlib.DEFLATED, _GZIP_WBITS),
        )
    return zstandard.ZstdCompressor(level=chosen, write_checksum=True).compressobj()


def decompressing(kind: str, source: storage.Source) -> storage.Source:
    """The decompressed bytes of ``source``, read on demand."""
    checked(kind)
    if kind == "none":
        return source
    if kind == "gzip":
        return _Inflater(source)
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(IO[bytes], source), read_size=_READ_SIZE, read_across_frames=False, closefd=False
    )
    return _ZstdSource(reader)


def _isal_level(level: int) -> int:
    """zlib's 1-9 on ISA-L's 1-3 (0 is ISA-L's fastest, kept for nothing): 1-3 fast,
    4-6 (the default 6) balanced, 7-9 smallest."""
    return min(3, max(1, (level + 2) // 3))


def checked(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"compression {kind!r} is not one of {', '.join(KINDS)}")
    return kind


class _Inflater:
    """gzip via ISA-L (as fast to read as to write), never producing more than asked
    (``max_length``)."""

    def __init__(self, source: storage.Source) -> None:
        self._source = source
        self._inflate = isal_zlib.decompressobj(_GZIP_WBITS)

    def read(self, size: int, /) -> bytes:
        inflate = self._inflate
        while not inflate.eof:
            data = inflate.unconsumed_tail or self._source.read(_READ_SIZE)
            if not data:
                raise errors.ArchiveCorrupt("the gzip stream ends early")
            try:
                out = inflate.decompress(data, max(size, 1))
            except _DECODE_ERRORS as exc:
                raise errors.ArchiveCorrupt(f"the gzip stream does not decode: {exc}") from exc
            if out:
                return out
        if inflate.unused_data:
            raise errors.ArchiveCorrupt("bytes follow the gzip stream")
        return b""


class _ZstdSource:
    def __init__(self, reader: zstandard.ZstdDecompressionReader) -> None:
        self._reader = reader

    def read(self, size: int, /) -> bytes:
        try:
            return self._reader.read(size)
        except zstandard.ZstdError as exc:
            raise errors.ArchiveCorrupt(f"the zstd stream does not decode: {exc}") from exc
