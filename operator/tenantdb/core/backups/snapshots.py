"""One consistent view of a tenant's data, taken as the tenant, with a short lock.

Why the data, the migration versions and the checksums agree, and why a dump
holds up migrations no longer than pg_dump itself would:

1. The tenant's migration lock (``locking.hold``, a row of the control schema)
   is taken, waiting at most the operator's ``lock_wait`` (else ``TenantBusy``,
   retried later). A migration commits its change (on the tenant's session)
   and then its ledger row (committing the lock's release), both while
   holding that lock; so while we hold it, no migration is between its two
   commits and none starts: the ledger says exactly what the tables are.
2. Still holding it, on a session as the tenant's owner role: the tables are
   listed, then ``BEGIN ISOLATION LEVEL REPEATABLE READ``, ``LOCK TABLE ... IN
   ACCESS SHARE MODE`` (a lock statement takes no snapshot, so the snapshot
   starts after every lock is held and no DDL can come between the snapshot
   and pg_dump's own locks), ``pg_export_snapshot()``; the ledger and seed
   history are read on the lock's connection.
3. The migration lock is released as soon as pg_dump holds its own ACCESS SHARE
   locks (``release``): before that, a migration's ALTER TABLE queued behind
   the snapshot's locks would queue pg_dump behind it, and the dump would wait
   for itself. Then the snapshot's transaction stays
   open, with ACCESS SHARE only (the lock pg_dump takes anyway), for the
   checksums and pg_dump: a migration altering a table waits for the dump's
   end, as it would for pg_dump; one creating new objects does not.

Shared tenants: the session is as the space's owner, narrowed with ``SET LOCAL
ROLE`` to the tenant's own login role before anything is read, so row-level
security picks the rows and no other tenant's row is ever seen; the lock is
the space's (its migrations change the shared tables).
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import connecting, errors, foreign_keys, locking, registry, securing, tenancy
from tenantdb.core.backups import catalog, provenance

LOCK_WAIT = "10s"
"""How long the snapshot's ``LOCK TABLE`` waits for a tenant's own lock on a table."""


@dataclass(frozen=True)
class Snapshot:
    """An open REPEATABLE READ transaction on a session as the tenant."""

    conn: psycopg.Connection[Any]
    snapshot_id: str
    """For ``pg_dump --snapshot``."""
    relations: list[tuple[str, str]]
    """(schema, table) of every table in the backup, in load order for shared tenants."""
    provenance: provenance.Provenance
    extensions: list[str]
    server_version: int
    release: Callable[[], None]
    """Ends the migration lock's transaction: called once pg_dump holds its table locks
    (at once for shared tenants, whose rows are read on this session)."""


@contextmanager
def taken(server: tenancy.Server, record: registry.TenantRecord) -> Iterator[Snapshot]:
    """The tenant's snapshot, open until the block ends (then rolled back), with the
    migration lock held until ``release`` or the block's end."""
    key = provenance.migration_key(record, server.shared_schema)
    with (
        connecting.translated_errors(),
        server.sessions.session(record.owner_role, record.database_name) as work,
    ):
        try:
            with ExitStack() as held:
                conn = held.enter_context(locking.hold(server.pool, server.control_schema, key))
                relations = _relations(work, server, record)
                snapshot_id, version = _begin(work, record, relations)
                history = provenance.read(conn, server.control_schema, key, record.uid)
                extensions = _extensions(work, record)
                yield Snapshot(
                    work, snapshot_id, relations, history, extensions, version, held.close
                )
        finally:
            if work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                work.rollback()


@contextmanager
def joined(
    server: tenancy.Server, record: registry.TenantRecord, snapshot_id: str
) -> Iterator[psycopg.Connection[Any]]:
    """A second session in an open snapshot (``SET TRANSACTION SNAPSHOT``), as the same
    role and narrowed the same way as ``taken``'s: what it reads, the snapshot holds."""
    with (
        connecting.translated_errors(),
        server.sessions.session(record.owner_role, record.database_name) as work,
    ):
        try:
            work.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            work.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
            if record.isolation == "shared":
                work.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(record.login_role)))
            yield work
        finally:
            if work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                work.rollback()


def home_schema(record: registry.TenantRecord) -> str:
    """The schema unqualified manifest table names are in."""
    return "public" if record.isolation == "database" else str(record.schema_name)


def _relations(
    work: psycopg.Connection[Any], server: tenancy.Server, record: registry.TenantRecord
) -> list[tuple[str, str]]:
    if record.isolation == "shared":
        space = tenancy.space_of(server, record)
        names = [t.name for t in securing.read_tables(work, space) if t.has_tenant_id]
        ordered = foreign_keys.foreign_key_order(work, space.schema, names)
        return [(str(space.schema), name) for name in ordered]
    if record.isolation == "database":
        return catalog.tables(work, [], every_schema=True)
    return catalog.tables(work, [str(record.schema_name)])


def _begin(
    work: psycopg.Connection[Any], record: registry.TenantRecord, relations: list[tuple[str, str]]
) -> tuple[str, int]:
    """BEGIN, the locks, then the snapshot (exported), in this order."""
    work.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    work.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_WAIT)))
    if record.isolation == "shared":
        work.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(record.login_role)))
    if relations:
        try:
            work.execute(catalog.lock_statement(relations))
        except psycopg.errors.LockNotAvailable as exc:
            raise errors.TenantBusy(
                f"a session of tenant {record.name} holds a lock on its tables"
            ) from exc
    row = work.execute(
        "SELECT pg_catalog.pg_export_snapshot(),"
        " pg_catalog.current_setting('server_version_num')::int"
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def _extensions(work: psycopg.Connection[Any], record: registry.TenantRecord) -> list[str]:
    if record.isolation == "database":
        return catalog.installed_extensions(work)
    if record.isolation == "shared":
        return []  # the space's extensions are the space's, made by its migrations
    return catalog.extensions_used(work, [home_schema(record)])
