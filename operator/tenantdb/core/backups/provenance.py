"""What the control schema says about a tenant's data model: its migrations and seeders.

A dump reads it with the tenant's migration lock held (see ``snapshots``), so
it matches the snapshot; a restore writes it for the new tenant, so later
Migrations apply on top of the restored data and seeders do not run twice.
Shared tenants have no migrations of their own: their tables are their
space's, whose versions are keyed by the space (``ledger.shared_uid``).
"""

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import naming, registry, shared
from tenantdb.core.backups import manifest
from tenantdb.core.migrations import ledger
from tenantdb.core.seeding import history

APPLIED_BY = "restore"
"""``applied_by`` of the ledger and seed-history rows a restore writes."""


@dataclass(frozen=True)
class Provenance:
    """The migrations applied to a tenant's data and the seeders recorded as run on it."""

    migrations: list[manifest.AppliedMigration] = field(default_factory=list)
    seeded: list[manifest.SeededEntry] = field(default_factory=list)

    @property
    def schema_version(self) -> int | None:
        """The highest applied version, or None."""
        return max((m.version for m in self.migrations), default=None)


def migration_key(record: registry.TenantRecord, legacy_schema: naming.Identifier) -> str:
    """The ledger uid, and the migration lock's key, of the tenant's data model: its own,
    or its shared space's."""
    if record.isolation != "shared":
        return record.uid
    space = shared.space_of(record.schema_name, record.namespace, legacy_schema)
    return (
        ledger.SHARED_TARGET
        if space.schema == legacy_schema
        else ledger.shared_uid(record.namespace)
    )


def _applied(schema: naming.Identifier) -> sql.Composed:
    return sql.SQL(
        "SELECT version, migration, checksum, scope, description FROM {}"
        " WHERE tenant_uid = %s AND state = 'applied' ORDER BY version"
    ).format(sql.Identifier(schema, ledger.TABLE))


def read(
    conn: psycopg.Connection[Any], control_schema: naming.Identifier, ledger_uid: str, uid: str
) -> Provenance:
    """The applied ledger rows of ``ledger_uid`` and the seed history of tenant ``uid``."""
    rows = conn.execute(_applied(control_schema), (ledger_uid,)).fetchall()
    migrations = [
        manifest.AppliedMigration(int(v), str(name), str(checksum), str(scope), str(text or ""))
        for v, name, checksum, scope, text in rows
    ]
    entries = history.load(conn, control_schema, uid).values()
    seeded = [
        manifest.SeededEntry(e.seeder, e.version, e.profile, e.checksum, e.rows) for e in entries
    ]
    return Provenance(migrations, seeded)


def record_migrations(
    conn: psycopg.Connection[Any],
    control_schema: naming.Identifier,
    target: registry.TenantRecord,
    applied: list[manifest.AppliedMigration],
) -> None:
    """The archive's migrations as applied to ``target`` (a schema or database tenant)."""
    for entry in applied:
        params = ledger.record(
            uid=target.uid,
            version=entry.version,
            namespace=target.namespace,
            tenant=target.name,
            migration=entry.migration,
            description=entry.description,
            scope=entry.scope,
            checksum=entry.checksum,
            state=ledger.State.APPLIED,
            applied_by=APPLIED_BY,
            attempt=False,
        )
        conn.execute(ledger.upsert(control_schema), params)


def record_seeders(
    conn: psycopg.Connection[Any],
    control_schema: naming.Identifier,
    target_uid: str,
    seeded: list[manifest.SeededEntry],
) -> None:
    """The archive's seeders as run on ``target_uid`` at their versions."""
    for entry in seeded:
        params = {
            "tenant_uid": target_uid,
            "seeder": entry.seeder,
            "version": entry.version,
            "profile": entry.profile,
            "checksum": entry.checksum,
            "rows": entry.rows,
            "seconds": 0.0,
            "applied_by": APPLIED_BY,
        }
        conn.execute(history.record(control_schema), params)


def missing_in_space(
    conn: psycopg.Connection[Any],
    control_schema: naming.Identifier,
    space_key: str,
    applied: list[manifest.AppliedMigration],
) -> list[str]:
    """Versions of a shared archive the target's space lacks (or has with another text):
    its tables would not take the rows."""
    have = {m.version: m.checksum for m in read(conn, control_schema, space_key, "").migrations}
    return [
        f"version {m.version} ({m.migration})" for m in applied if have.get(m.version) != m.checksum
    ]
