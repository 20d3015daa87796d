"""Where archives live: a directory (a volume) or an S3 bucket, streamed both ways.

Owns: the ``Storage`` protocol, ``VolumeStorage`` (a directory), the layout
of archive locations (``<namespace>/<tenant>/<timestamp>-<backup uid>``),
and the translation of OS failures into ``core.errors`` storage classes
(``s3`` holds the S3 implementation).
A writer commits its object only on a clean exit and leaves nothing behind
otherwise, so a reader never sees half an object. Knows nothing about what
the bytes mean (``archive`` does), never logs or repeats credentials.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from tenantdb.core import errors

MIB = 1024 * 1024

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_TEMP_SUFFIX = ".partial"


class Sink(Protocol):
    """Where an object's bytes go while it is being written."""

    def write(self, data: bytes | bytearray | memoryview, /) -> None: ...


class Source(Protocol):
    """An object's bytes, read in order; ``read`` returns ``b""`` at the end."""

    def read(self, size: int, /) -> bytes: ...


class Storage(Protocol):
    """A flat namespace of objects keyed by ``/``-separated relative paths."""

    def writer(self, key: str) -> contextlib.AbstractContextManager[Sink]:
        """Write an object: it appears on a clean exit, nothing remains on an exception."""
        ...

    def reader(self, key: str) -> contextlib.AbstractContextManager[Source]:
        """Read an object from its start (``ArchiveNotFound`` if there is none)."""
        ...

    def size(self, key: str) -> int:
        """Bytes of an object (``ArchiveNotFound`` if there is none)."""
        ...

    def exists(self, key: str) -> bool: ...

    def keys(self, prefix: str) -> list[str]:
        """Every object key under the directory ``prefix``, sorted."""
        ...

    def delete(self, prefix: str) -> int:
        """Remove every object under the directory ``prefix``; return how many there were."""
        ...


def tenant_location(namespace: str, tenant: str) -> str:
    """Where every archive of one tenant lives: delete it to forget the tenant's backups."""
    return "/".join(_checked_part(part) for part in (namespace, tenant))


def archive_location(namespace: str, tenant: str, started: datetime, backup_uid: str) -> str:
    """``<namespace>/<tenant>/<UTC timestamp>-<backup uid>``: one archive's directory.

    The timestamp comes first in the last part so that a tenant's archives
    list in the order they were taken.
    """
    if started.tzinfo is None:
        raise ValueError("an archive's start time must be timezone-aware")
    stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = _checked_part(f"{stamp}-{backup_uid}")
    return f"{tenant_location(namespace, tenant)}/{name}"


def object_key(location: str, name: str) -> str:
    """The key of one object (``data``, ``manifest.json``) in an archive's directory."""
    return checked_key(f"{location}/{name}")


def checked_key(key: str) -> str:
    """Refuse keys that could escape a root: absolute, empty parts, ``.`` or ``..``."""
    parts = key.split("/")
    if not key or any(part in {"", ".", ".."} or "\\" in part or "\0" in part for part in parts):
        raise ValueError(f"{key!r} is not a relative object key")
    return key


def _checked_part(part: str) -> str:
    if not _PART.fullmatch(part):
        raise ValueError(f"{part!r} cannot be part of an archive location")
    return part


class VolumeStorage:
    """Objects as files under ``root`` (a PVC in a cluster): key ``a/b`` is ``root/a/b``.

    An object is written to a hidden temporary file beside its final name,
    fsynced, then renamed over it, and the directory is fsynced: after a
    crash either the whole object or nothing is there.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"VolumeStorage({str(self.root)!r})"

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Sink]:
        path = self._path(key)
        with _os_errors(f"cannot create {key} under {self.root}", writing=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX
            )
        try:
            yield _FileSink(fd, key)
            with _os_errors(f"cannot write {key} under {self.root}"):
                os.fsync(fd)
                os.close(fd)
                fd = -1
                os.replace(temp, path)
                _fsync_directory(path.parent)
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    @contextlib.contextmanager
    def reader(self, key: str) -> Iterator[Source]:
        with _os_errors(f"cannot read {key} under {self.root}"):
            handle = self._path(key).open("rb")
        with handle:
            yield _FileSource(handle, key)

    def size(self, key: str) -> int:
        with _os_errors(f"cannot read {key} under {self.root}"):
            return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str) -> list[str]:
        top = self._path(prefix)
        found = []
        with _os_errors(f"cannot list {prefix} under {self.root}"):
            for directory, _, files in os.walk(top, onerror=_raise):
                for name in files:
                    if not (name.startswith(".") and name.endswith(_TEMP_SUFFIX)):
                        found.append(Path(directory, name).relative_to(self.root).as_posix())
        return sorted(found)

    def delete(self, prefix: str) -> int:
        top = self._path(prefix)
        with _os_errors(f"cannot delete {prefix} under {self.root}"):
            if not top.exists():
                return 0
            count = sum(len(files) for _, _, files in os.walk(top, onerror=_raise))
            shutil.rmtree(top)
            _remove_empty_parents(top.parent, self.root)
        return count

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).split("/"))


class _FileSink:
    """Unbuffered writes: nothing is left in a buffer to flush when a write fails."""

    def __init__(self, fd: int, key: str) -> None:
        self._fd = fd
        self._key = key

    def write(self, data: bytes | bytearray | memoryview, /) -> None:
        view = memoryview(data)
        with _os_errors(f"cannot write {self._key}"):
            while view:
                view = view[os.write(self._fd, view) :]


class _FileSource:
    def __init__(self, handle: BinaryIO, key: str) -> None:
        self._handle = handle
        self._key = key

    def read(self, size: int, /) -> bytes:
        with _os_errors(f"cannot read {self._key}"):
            data: bytes = self._handle.read(size)
            return data


_DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_MISSING_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR}


@contextlib.contextmanager
def _os_errors(what: str, writing: bool = False) -> Iterator[None]:
    """Turn an ``OSError`` into the storage error class that says what went wrong
    (a directory a writer cannot make, say under a read-only or virtual file system,
    is a storage the operator may not write, not a missing archive)."""
    try:
        yield
    except OSError as exc:
        message = f"{what}: {exc.strerror or exc}"
        if exc.errno in _DENIED_ERRNOS or (writing and exc.errno in _MISSING_ERRNOS):
            raise errors.StorageDenied(message) from exc
        if exc.errno in _FULL_ERRNOS:
            raise errors.StorageFull(message) from exc
        if exc.errno in _MISSING_ERRNOS:
            raise errors.ArchiveNotFound(message) from exc
        raise errors.StorageError(message) from exc


def _raise(exc: OSError) -> None:
    """``os.walk`` skips unreadable directories by default; a listing must not."""
    if exc.errno != errno.ENOENT:
        raise exc


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_empty_parents(directory: Path, root: Path) -> None:
    """Remove now-empty directories up to (not including) ``root``."""
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
