"""Integrity validation of one tenant: what is wrong with its schema, changing nothing.

Findings: constraints left ``NOT VALID``, indexes left invalid, tables no
applied migration created and tables an applied migration created that are
gone (``expectations``), sequences behind the largest key of their column,
and applied versions whose script is unknown or differs from the one applied.

Everything runs on a session whose session user is the tenant's owner (its
space's owner for a ``shared`` tenant), inside a ``READ ONLY`` transaction,
so nothing can be changed, not even by a trigger; the largest keys are read
as the tenant's login role for a ``shared`` tenant, so row-level security
shows its rows only. The tenant's migration lock and its backup lock are
tried, never waited for: a tenant with a migration, seeding, reset or backup
in flight is reported busy.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import connecting, errors, expectations, locking, scoping, shared
from tenantdb.core.migrations import ledger, scripts
from tenantdb.core.tenancy import Server

MAX_KEY_TIMEOUT = "30s"
"""``statement_timeout`` of each largest-key read (an unindexed column is scanned)."""


class Kind(StrEnum):
    """What a finding is about; stable words for automation."""

    NOT_VALID_CONSTRAINT = "NotValidConstraint"
    INVALID_INDEX = "InvalidIndex"
    UNEXPECTED_TABLE = "UnexpectedTable"
    MISSING_TABLE = "MissingTable"
    SEQUENCE_BEHIND = "SequenceBehind"
    UNKNOWN_VERSION = "UnknownVersion"
    CHANGED_VERSION = "ChangedVersion"


@dataclass(frozen=True)
class Finding:
    """One thing wrong, with the object it is about and a sentence saying what to do."""

    kind: Kind
    object: str
    message: str


@dataclass
class Report:
    """What a validation found (``findings``) and what it could not check (``notes``)."""

    uid: str
    name: str
    namespace: str
    isolation: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No finding (notes do not fail a validation)."""
        return not self.findings


class NotFound(errors.TenantDBError):
    """No live tenant of that UID (retained, restoring, or never registered)."""

    reason = "TenantNotFound"


def backup_lock(uid: str) -> str:
    """The key a backup of the tenant holds (``core.backups.taking``)."""
    return f"backup:{uid}"


@contextmanager
def tenant_locked(server: Server, uid: str) -> Iterator[psycopg.Connection[Any]]:
    """An operator connection holding the tenant's migration and backup locks, or
    ``TenantBusy`` at once if anyone holds either."""
    with locking.attempt(server.pool, server.control_schema, uid) as conn:
        if conn is None:
            raise errors.TenantBusy(
                "a migration, seeding, provisioning or reset of this tenant is running; "
                "try again when it is done"
            )
        cause: psycopg.Error | None = None
        try:
            backup_free = locking.take_now(conn, server.control_schema, backup_lock(uid))
        except psycopg.errors.LockNotAvailable as exc:  # a first backup's key, uncommitted
            backup_free, cause = False, exc
        if not backup_free:
            raise errors.TenantBusy(
                "a backup of this tenant is running; try again when it is done"
            ) from cause
        locking.release_snapshot(conn)
        yield conn


def applied_scripts(
    conn: psycopg.Connection[Any], server: Server, location: scoping.TenantLocation
) -> tuple[str, dict[int, str]]:
    """The ledger uid and scope whose versions shape the tenant's tables, and their
    applied versions with checksums."""
    if location.isolation == "shared":
        owner = (
            ledger.SHARED_TARGET
            if location.schema_name == server.shared_schema
            else ledger.shared_uid(location.namespace)
        )
        scope = "shared"
    else:
        owner, scope = location.uid, "tenant"
    rows = conn.execute(
        _APPLIED.format(sql.Identifier(server.control_schema, ledger.TABLE)), (owner, scope)
    )
    return scope, {int(v): str(c) for v, c in rows.fetchall()}


_APPLIED = sql.SQL(
    "SELECT version, checksum FROM {} WHERE tenant_uid = %s AND scope = %s AND state = 'applied'"
    " ORDER BY version"
)


def validate(server: Server, uid: str, known: Sequence[scripts.Script]) -> Report:
    """Validate one live tenant against the scripts ``known`` (every Migration of its
    namespace, or a script directory)."""
    with tenant_locked(server, uid) as conn:
        location = scoping.load(conn, server.control_schema, uid)
        if location is None:
            raise NotFound(f"no live tenant has UID {uid}")
        scope, applied = applied_scripts(conn, server, location)
        report = Report(uid, location.name, location.namespace, location.isolation)
        relevant = {s.version: s for s in known if s.scope.value == scope}
        usable = _check_versions(report, applied, relevant)
        schema = location.search_path(server.shared_schema)
        wanted = expectations.expected(usable, schema)
        report.notes += wanted.unread
        with _inside(server, location) as tenant:
            _check_catalog(report, tenant, schema)
            _check_tables(report, tenant, schema, wanted, complete=len(usable) == len(applied))
            _check_sequences(report, tenant, location, server.shared_schema)
    return report


def _check_versions(
    report: Report, applied: dict[int, str], known: dict[int, scripts.Script]
) -> list[scripts.Script]:
    usable = []
    for version, checksum in applied.items():
        script = known.get(version)
        if script is None:
            report.findings.append(
                Finding(
                    Kind.UNKNOWN_VERSION,
                    str(version),
                    f"version {version} is applied but no Migration of that version is known"
                    " here: the tables it made cannot be checked",
                )
            )
        elif script.checksum != checksum:
            report.findings.append(
                Finding(
                    Kind.CHANGED_VERSION,
                    script.name,
                    f"version {version} ({script.name}) differs from the text that was applied"
                    " (drift): tables are checked against the current text",
                )
            )
            usable.append(script)
        else:
            usable.append(script)
    return usable


@contextmanager
def _inside(server: Server, location: scoping.TenantLocation) -> Iterator[psycopg.Connection[Any]]:
    """A read-only transaction on the tenant's own session (its owner's)."""
    login, database = scoping.session_login(location)
    with (
        connecting.translated_errors(),
        server.sessions.session(login, database) as conn,
        conn.transaction(),
    ):
        conn.execute("SET TRANSACTION READ ONLY")
        yield conn


_NOT_VALID = """
SELECT c.conrelid::regclass::text, c.conname::text, c.contype::text
FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
WHERE NOT c.convalidated AND r.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
ORDER BY 1, 2
"""
_INVALID_INDEXES = """
SELECT i.relname::text, x.indrelid::regclass::text
FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
WHERE NOT x.indisvalid AND i.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
ORDER BY 1
"""
_TABLES = """
SELECT c.relname::text FROM pg_catalog.pg_class c
WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')
AND NOT c.relispartition AND c.relname <> ALL (%(bookkeeping)s)
ORDER BY 1
"""
_SEQUENCES = """
SELECT s.schemaname::text, s.sequencename::text, t.relname::text, a.attname::text, s.last_value
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_class q ON q.oid = d.objid AND q.relkind = 'S'
JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
JOIN pg_catalog.pg_sequences s ON s.schemaname = %(schema)s AND s.sequencename = q.relname
WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
AND d.deptype IN ('a', 'i') AND t.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
AND pg_catalog.format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint')
ORDER BY 2
"""
CONSTRAINT_KINDS = {"f": "foreign key", "c": "check", "n": "not-null"}


def _check_catalog(report: Report, conn: psycopg.Connection[Any], schema: str) -> None:
    for table, name, kind in conn.execute(_NOT_VALID, {"schema": schema}).fetchall():
        what = CONSTRAINT_KINDS.get(kind, "constraint")
        report.findings.append(
            Finding(
                Kind.NOT_VALID_CONSTRAINT,
                f"{table}.{name}",
                f"{what} {name} on {table} is NOT VALID: rows written before it was added are"
                f" unchecked; run ALTER TABLE {table} VALIDATE CONSTRAINT {name} in a Migration",
            )
        )
    for index, table in conn.execute(_INVALID_INDEXES, {"schema": schema}).fetchall():
        report.findings.append(
            Finding(
                Kind.INVALID_INDEX,
                index,
                f"index {index} on {table} is invalid (a CREATE INDEX CONCURRENTLY that failed):"
                " it is maintained on every write but never used; drop it and build it again",
            )
        )


def _check_tables(
    report: Report,
    conn: psycopg.Connection[Any],
    schema: str,
    wanted: expectations.Expectations,
    complete: bool,
) -> None:
    params = {"schema": schema, "bookkeeping": list(shared.BOOKKEEPING_TABLES)}
    present = {row[0] for row in conn.execute(_TABLES, params).fetchall()}
    caveat = "" if complete and not wanted.unread else " (some migrations could not be read)"
    for table in sorted(present - wanted.tables.keys()):
        report.findings.append(
            Finding(
                Kind.UNEXPECTED_TABLE,
                table,
                f"table {table} was created by no applied migration{caveat}: made by hand or by"
                " a migration since rolled back outside tenantdb",
            )
        )
    for table in sorted(wanted.tables.keys() - present):
        version = wanted.tables[table]
        report.findings.append(
            Finding(
                Kind.MISSING_TABLE,
                table,
                f"table {table}, created by version {version}, is gone: dropped outside a migration",
            )
        )


def _check_sequences(
    report: Report, conn: psycopg.Connection[Any], location: scoping.TenantLocation, legacy: str
) -> None:
    schema = location.search_path(legacy)
    sequences = conn.execute(_SEQUENCES, {"schema": schema}).fetchall()
    if not sequences:
        return
    scoping.enter(conn, location, "login" if location.isolation == "shared" else "owner", legacy)
    conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(MAX_KEY_TIMEOUT)))
    for seq_schema, sequence, table, column, last_value in sequences:
        query = sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column), sql.Identifier(seq_schema, table)
        )
        row = conn.execute(query).fetchone()
        largest = row[0] if row else None
        if largest is not None and (last_value is None or int(largest) > int(last_value)):
            at = "never used" if last_value is None else f"at {last_value}"
            report.findings.append(
                Finding(
                    Kind.SEQUENCE_BEHIND,
                    f"{schema}.{sequence}",
                    f"sequence {sequence} is {at} but {table}.{column} holds {largest}: the next"
                    f" inserts will collide; move it past {largest} with setval in a Migration",
                )
            )
