"""The seed history: which seeder, at which version, ran on which tenant.

Owns the queries on ``<control_schema>.seed_history`` (the table itself is
created by step 2 of ``core.registry.CONTROL_STEPS``): one row per tenant and seeder with
version, checksum, rows, time taken, when and by whom. A row is written in
the same transaction as the seeder's data whenever the tenant lives in the
operator's database, so a seeder is recorded if and only if its rows are.
Builders return ``sql.Composed``; the small readers below execute them.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core.seeding import declarations

TABLE = "seed_history"


@dataclass(frozen=True)
class Entry:
    """One seeder as applied to one tenant."""

    seeder: str
    version: int
    profile: str
    checksum: str
    rows: int
    seconds: float
    applied_at: datetime
    applied_by: str


def select(control_schema: str) -> sql.Composed:
    """A tenant's history (parameter: tenant uid), by seeder name."""
    return sql.SQL(
        "SELECT seeder, version, profile, checksum, rows, seconds, applied_at, applied_by"
        " FROM {} WHERE tenant_uid = %s ORDER BY seeder"
    ).format(sql.Identifier(control_schema, TABLE))


def record(control_schema: str) -> sql.Composed:
    """Insert or replace one seeder's row (named parameters: tenant_uid, seeder, version,
    profile, checksum, rows, seconds, applied_by)."""
    return sql.SQL(
        """
        INSERT INTO {} (tenant_uid, seeder, version, profile, checksum, rows, seconds, applied_by)
        VALUES (%(tenant_uid)s, %(seeder)s, %(version)s, %(profile)s, %(checksum)s, %(rows)s,
                %(seconds)s, %(applied_by)s)
        ON CONFLICT (tenant_uid, seeder) DO UPDATE SET
            version = EXCLUDED.version, profile = EXCLUDED.profile, checksum = EXCLUDED.checksum,
            rows = EXCLUDED.rows, seconds = EXCLUDED.seconds, applied_at = now(),
            applied_by = EXCLUDED.applied_by
        """
    ).format(sql.Identifier(control_schema, TABLE))


def forget(control_schema: str) -> sql.Composed:
    """Drop one seeder's row (parameters: tenant uid, seeder name)."""
    return sql.SQL("DELETE FROM {} WHERE tenant_uid = %s AND seeder = %s").format(
        sql.Identifier(control_schema, TABLE)
    )


def load(conn: psycopg.Connection[Any], control_schema: str, tenant_uid: str) -> dict[str, Entry]:
    """A tenant's history, keyed by seeder name."""
    rows = conn.execute(select(control_schema), (tenant_uid,)).fetchall()
    return {row[0]: Entry(*row) for row in rows}


def write(
    conn: psycopg.Connection[Any],
    control_schema: str,
    tenant_uid: str,
    seeder: declarations.Seeder,
    rows: int,
    seconds: float,
    applied_by: str,
) -> None:
    """Record one applied seeder; ``applied_at`` is the server's ``now()``."""
    params = {
        "tenant_uid": tenant_uid,
        "seeder": seeder.name,
        "version": seeder.version,
        "profile": seeder.profile.value,
        "checksum": seeder.checksum,
        "rows": rows,
        "seconds": seconds,
        "applied_by": applied_by,
    }
    conn.execute(record(control_schema), params)


def erase(conn: psycopg.Connection[Any], control_schema: str, tenant_uid: str, seeder: str) -> None:
    """Forget one seeder of one tenant (after ``unseed``)."""
    conn.execute(forget(control_schema), (tenant_uid, seeder))
