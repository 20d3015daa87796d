"""The three things done with an archive, each end to end: take, restore, verify.

What each holds while it works, and why:

* ``take`` holds the tenant's *backup* lock (``backup:<uid>``) for the whole
  dump, so two backups of one tenant never run at once, but not its
  migration lock: a Migration may run beside it, and the dump reads one
  snapshot, so it sees the tenant before or after that Migration, never
  half of it (``dumping`` says how the versions read match the snapshot).
* ``restore`` (``restoring``) holds the *target's* migration lock (its UID,
  as the engine takes it) while it loads, so no rollout or catch-up runs
  inside a tenant whose data is half there; the registry marks the tenant
  as restoring until the end, so none starts before either.
* ``verify`` restores into a scratch copy that nobody else knows of.

Every archive is checked whole (``ArchiveReader.verify``) before a restore or a
verification reads it again to load it: a tampered or truncated archive is
refused before anything is created.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tenantdb.core import connecting, errors, locking, registry
from tenantdb.core.backups import archive, dumping, manifest, restoring, storage, verifying
from tenantdb.core.tenancy import Server

Progress = Callable[[int], None]
"""Called with the payload bytes moved so far."""
LOCK_RETRY = 1.0
"""Seconds between two tries of a lock another backup of the tenant holds."""


class ArchiveTooNew(errors.TenantDBError):
    """The archive's tenant had Migrations this namespace does not define."""

    reason = "ArchiveTooNew"


class UnknownTenant(errors.TenantDBError):
    """No live tenant of that UID is registered."""

    reason = "TenantNotFound"


@dataclass(frozen=True)
class Origin:
    """Whose archive the Backup object says it holds: what its manifest must say too.

    Anyone who can write to a bucket can write a manifest; its namespace chooses the
    shared space a verification's scratch copy is made in, so it is never taken on trust."""

    namespace: str
    tenant_uid: str


@dataclass(frozen=True)
class Options:
    """How to take one archive."""

    compression: str
    level: int | None = None
    tenant_key: bytes | None = field(default=None, repr=False)
    """Encrypt under this tenant key (``encryption.new_tenant_key``); None: plain."""
    tools_dir: Path | None = None
    tool_version: str = ""
    progress: Progress | None = None
    """Called with the payload bytes dumped so far."""


def take(
    server: Server, tenant_uid: str, store: storage.Storage, location: str, options: Options
) -> manifest.Manifest:
    """Dump the tenant into a new archive at ``location``; the Manifest as stored."""
    record = _record(server, tenant_uid)
    with _waiting_for(server, f"backup:{tenant_uid}"):
        started = _now()
        with archive.ArchiveWriter(
            store,
            location,
            compression=options.compression,
            level=options.level,
            tenant_key=options.tenant_key,
        ) as sink:
            dumped = dumping.dump(
                server, record, sink, progress=options.progress, tools_dir=options.tools_dir
            )
            made = dumping.manifest_for(record, dumped, started, _now(), options.tool_version)
            return sink.finish(made)


def restore(
    server: Server,
    store: storage.Storage,
    location: str,
    tenant_key: bytes | None,
    target_uid: str,
    tools_dir: Path | None,
    known_versions: dict[int, str],
    origin: Origin,
    progress: Progress | None = None,
) -> manifest.Manifest:
    """Load a checked archive of ``origin`` into the (new, empty) tenant ``target_uid``."""
    reader = archive.ArchiveReader(store, location, tenant_key=tenant_key)
    checked = _of_origin(reader.verify(), origin)
    unknown = [m.version for m in checked.migrations if m.version not in known_versions]
    if unknown:
        raise ArchiveTooNew(
            f"the archive is at migration version {checked.schema_version}, but this namespace "
            f"defines no Migration of version(s) {', '.join(map(str, unknown))}: apply them "
            "before restoring"
        )
    target = _record(server, target_uid)
    with reader.payload() as source:
        restoring.restore(server, checked, source, target, progress=progress, tools_dir=tools_dir)
    with connecting.connection(server.pool) as conn:
        conn.execute(registry.restored(server.control_schema), (target_uid,))
    return checked


def verify(
    server: Server,
    store: storage.Storage,
    location: str,
    tenant_key: bytes | None,
    tools_dir: Path | None,
    origin: Origin,
    progress: Progress | None = None,
) -> verifying.VerifyResult:
    """Restore the archive of ``origin`` into a scratch copy, compare it with its
    manifest, drop the copy."""
    reader = archive.ArchiveReader(store, location, tenant_key=tenant_key)
    checked = _of_origin(reader.verify(), origin)
    with reader.payload() as source:
        return verifying.verify(server, checked, source, progress=progress, tools_dir=tools_dir)


def discard(store: storage.Storage, location: str) -> None:
    """Remove an archive (its manifest first would be better, the storage decides the order)."""
    store.delete(location)


def _of_origin(checked: manifest.Manifest, origin: Origin) -> manifest.Manifest:
    if (checked.namespace, checked.tenant_uid) != (origin.namespace, origin.tenant_uid):
        raise errors.ArchiveTampered(
            f"the archive's manifest names tenant {checked.tenant_uid} of namespace "
            f"{checked.namespace}, not the Backup's tenant {origin.tenant_uid} of "
            f"{origin.namespace}"
        )
    return checked


def _record(server: Server, uid: str) -> registry.TenantRecord:
    with connecting.connection(server.pool) as conn:
        record = registry.load(conn, server.control_schema, uid)
    if record is None:
        raise UnknownTenant(f"no tenant with UID {uid} is registered")
    return record


@contextmanager
def _waiting_for(server: Server, key: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold a lock, trying again while someone else holds it; work written on the
    connection commits with the lock's release."""
    while True:
        with locking.attempt(server.pool, server.control_schema, key) as conn:
            if conn is not None:
                locking.release_snapshot(conn)
                yield conn
                return
        time.sleep(LOCK_RETRY)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
