"""Resetting one tenant: its data emptied, its schema, roles and history kept, seeders re-run.

What stays: the schema and every table, the roles and their grants, the
migration ledger and markers, and the rows of tables an applied migration
writes itself (reference data, ``expectations.written``). What goes: every
other row of the tenant's tables; its seed history, so that its production
seeders run again afterwards (``reseed``) and put the production data back.

Guards, in order, before anything is touched: the confirmation must be the
tenant's name; in production a Backup must have been taken first (the caller
names it: the CLI checks it on the API server, the controller takes one);
the tenant's migration and backup locks must be free (``TenantBusy``
otherwise, never a wait).

It runs as the tenant itself, never on an operator connection: ``TRUNCATE``
of a ``schema`` or ``database`` tenant's tables on a session as its owner
(so triggers run with the tenant's rights, and no other schema is reachable
by privilege), and a shared tenant's ``DELETE`` as its login role under
row-level security, dependent tables first, so another tenant's rows cannot be
touched whatever the statement says.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tenantdb import settings
from tenantdb.core import connecting, errors, expectations, scoping, securing, shared, validation
from tenantdb.core.migrations import scripts
from tenantdb.core.seeding import commands as seeding
from tenantdb.core.seeding import history
from tenantdb.core.tenancy import Server


class ResetRefused(errors.TenantDBError):
    """A guard refused the reset; nothing was changed."""

    reason = "ResetRefused"


@dataclass
class ResetReport:
    """What a reset emptied and kept, and the seeders it ran again."""

    uid: str
    name: str
    isolation: str
    emptied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Tables whose rows an applied migration wrote: reference data, kept."""
    rows_deleted: int | None = None
    """Rows deleted (``shared`` tenants); None where tables were truncated."""
    backup: str | None = None
    forgotten: list[str] = field(default_factory=list)
    """Seeders the tenant's seed history recorded before the reset (run again after it)."""
    reseeded: list[str] = field(default_factory=list)


def check_confirmation(name: str, confirmation: str | None) -> None:
    """The confirmation must repeat the tenant's name exactly."""
    if confirmation != name:
        given = "no confirmation" if not confirmation else f"confirmation {confirmation!r}"
        raise ResetRefused(
            f"{given} given: a reset empties the tenant's data; confirm with the tenant's name"
            f" ({name!r})"
        )


def check_backup(environment: str, backup: str | None) -> None:
    """In production, no reset without a Backup taken first."""
    if environment == settings.Environment.PRODUCTION and not backup:
        raise ResetRefused(
            "refused in production without a Backup taken first: name a Completed Backup of"
            " this tenant (the operator takes one itself when reset by annotation)"
        )


def reset(
    server: Server,
    uid: str,
    confirmation: str | None,
    known: Sequence[scripts.Script],
    *,
    environment: str,
    backup: str | None,
) -> ResetReport:
    """Empty the tenant's data and forget its seed history (``reseed`` runs its seeders)."""
    with validation.tenant_locked(server, uid) as conn:
        location = scoping.load(conn, server.control_schema, uid)
        if location is None:
            raise validation.NotFound(f"no live tenant has UID {uid}")
        check_confirmation(location.name, confirmation)
        check_backup(environment, backup)
        scope, applied = validation.applied_scripts(conn, server, location)
        usable = [s for s in known if s.version in applied and s.scope.value == scope]
        schema = location.search_path(server.shared_schema)
        written = expectations.expected(usable, schema).written
        report = ResetReport(uid, location.name, location.isolation, backup=backup)
        if location.isolation == "shared":
            _delete_rows(server, conn, location, report, set(written))
        else:
            _truncate(server, location, schema, report, set(written))
        forgotten = conn.execute(
            _FORGET_SEEDS.format(sql.Identifier(server.control_schema, history.TABLE)), (uid,)
        ).fetchall()
        report.forgotten = sorted(str(row[0]) for row in forgotten)
    return report


_FORGET_SEEDS = sql.SQL("DELETE FROM {} WHERE tenant_uid = %s RETURNING seeder")

_OWN_TABLES = """
SELECT c.relname::text FROM pg_catalog.pg_class c
WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')
AND NOT c.relispartition AND c.relname <> ALL (%(bookkeeping)s)
ORDER BY 1
"""


def _truncate(
    server: Server,
    location: scoping.TenantLocation,
    schema: str,
    report: ResetReport,
    kept: set[str],
) -> None:
    """One ``TRUNCATE`` of every table but the kept ones, as the tenant's owner."""
    login, database = scoping.session_login(location)
    with (
        connecting.translated_errors(),
        server.sessions.session(login, database) as work,
        work.transaction(),
    ):
        scoping.enter(work, location, "owner", server.shared_schema)
        params = {"schema": schema, "bookkeeping": list(shared.BOOKKEEPING_TABLES)}
        tables = [row[0] for row in work.execute(_OWN_TABLES, params).fetchall()]
        report.kept = [t for t in tables if t in kept]
        report.emptied = [t for t in tables if t not in kept]
        if report.emptied:
            names = sql.SQL(", ").join(sql.Identifier(schema, t) for t in report.emptied)
            work.execute(sql.SQL("TRUNCATE TABLE {} RESTART IDENTITY").format(names))


_REFERENCES = """
SELECT c.conrelid::regclass::text, c.confrelid::regclass::text
FROM pg_catalog.pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = pg_catalog.to_regnamespace(%(schema)s)
"""


def _delete_rows(
    server: Server,
    conn: psycopg.Connection[Any],
    location: scoping.TenantLocation,
    report: ResetReport,
    kept: set[str],
) -> None:
    """The tenant's rows of every shared table, as its login role under row-level security."""
    space = shared.space_of(location.schema_name, location.namespace, server.shared_schema)
    tables = [t.name for t in securing.read_tables(conn, space) if t.has_tenant_id]
    report.kept = sorted(t for t in tables if t in kept)
    chosen = [t for t in tables if t not in kept]
    edges = conn.execute(_REFERENCES, {"schema": space.schema}).fetchall()
    report.emptied = dependents_first(chosen, [(_bare(a), _bare(b)) for a, b in edges])
    login, database = scoping.session_login(location)
    deleted = 0
    with (
        connecting.translated_errors(),
        server.sessions.session(login, database) as work,
        work.transaction(),
    ):
        scoping.enter(work, location, "login", server.shared_schema)
        for table in report.emptied:
            statement = sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(
                sql.Identifier(space.schema, table)
            )  # row-level security picks the rows; the filter says the same, twice over
            deleted += work.execute(statement, (location.uid,)).rowcount
    report.rows_deleted = deleted


def dependents_first(tables: Sequence[str], references: Sequence[tuple[str, str]]) -> list[str]:
    """``tables`` ordered so that a table comes before every table it references. Pure.

    ``references`` are (referencing, referenced) pairs; a cycle (or a table referencing
    itself) is left in name order, which a single transaction's DELETEs survive only
    with deferrable keys: the database then says so, and nothing is deleted.
    """
    remaining = sorted(set(tables))
    ordered: list[str] = []
    while remaining:
        free = [
            t
            for t in remaining
            if not any(b == t and a in remaining and a != t for a, b in references)
        ]
        step = free or remaining[:1]
        ordered += step
        remaining = [t for t in remaining if t not in step]
    return ordered


def _bare(regclass: str) -> str:
    """A table's name without its schema, as ``regclass::text`` printed it."""
    return regclass.rsplit(".", 1)[-1].strip('"')


def reseed(
    server: Server,
    uid: str,
    profile: str,
    environment: str,
    seeders_dir: Path,
    applied_by: str,
    only: Sequence[str] = (),
) -> list[str]:
    """Run the tenant's seeders of ``profile`` (``only`` those, if given) again after a
    reset; the seeders that ran."""
    report = seeding.seed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        uid,
        profile,
        list(only),
        environment,
        seeders_dir,
        applied_by=applied_by,
    )
    return list(report.applied)
