"""The migration ledger: one row per (tenant, version) in the control schema.

The table is created by ``registry.CONTROL_STEPS`` (step 2). A row says
what ran where: the checksum of ``up``, the state, how long it took, who
ran it, the database's error for a failure and how many attempts there
were. Progress of a rollout over any number of tenants is one query here,
never a visit to each tenant.

States: ``applied``; ``failed`` (a permanent error, retried only when a
person asks); ``retry`` (a transient error, or a retry someone asked for);
``running`` (a ``transactional: false`` migration part-way through,
``statements_done`` says how far); ``rolled_back``. An ``applied`` row with
an ``error`` is one whose rollback failed.

Builders return ``sql.Composed``; the small functions at the end run them.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tenantdb.core import naming

TABLE = "migration_ledger"
"""Created by step 2 of ``registry.CONTROL_STEPS``."""

SHARED_TARGET = "shared"
"""The ``tenant_uid`` of ``scope: shared`` migrations before shared spaces were per
namespace: the legacy shared schema's rows, kept as its history (Kubernetes UIDs are
UUIDs, so no tenant has it)."""
SHARED_PREFIX = SHARED_TARGET + ":"


def shared_uid(namespace: str) -> str:
    """The ``tenant_uid`` (and lock key) of a namespace's ``scope: shared`` migrations."""
    return SHARED_PREFIX + namespace


def is_shared_uid(uid: str) -> bool:
    """Whether a ledger ``tenant_uid`` is a shared space's (a namespace's or the legacy one)."""
    return uid == SHARED_TARGET or uid.startswith(SHARED_PREFIX)


class State(StrEnum):
    """A ledger row's state."""

    RUNNING = "running"
    APPLIED = "applied"
    FAILED = "failed"
    RETRY = "retry"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Row:
    """One tenant's record of one version (``state`` None: never attempted)."""

    tenant_uid: str
    state: State | None
    checksum: str | None = None
    statements_done: int = 0
    attempts: int = 0
    error: str | None = None

    @property
    def rollback_failed(self) -> bool:
        """The version's ``down`` failed: still applied, with the error kept."""
        return self.state is State.APPLIED and bool(self.error)

    def drifted(self, checksum: str) -> bool:
        """Applied (or partly applied) with a different text than ``checksum``."""
        partly = self.state is not None and self.state is not State.ROLLED_BACK
        partly = partly and (self.state is State.APPLIED or self.statements_done > 0)
        return partly and self.checksum != checksum


@functools.cache
def _table(schema: naming.Identifier) -> sql.Identifier:
    return sql.Identifier(schema, TABLE)


@functools.cache
def select_row(schema: naming.Identifier) -> sql.Composed:
    """One row (parameters: tenant uid, version)."""
    return sql.SQL(
        "SELECT tenant_uid, state, checksum, statements_done, attempts, error FROM {}"
        " WHERE tenant_uid = %s AND version = %s"
    ).format(_table(schema))


def select_rows(schema: naming.Identifier) -> sql.Composed:
    """The row of each given tenant for one version, ``NULL`` state where none
    (parameters: uids, version)."""
    return sql.SQL(
        "SELECT t.uid, l.state, l.checksum, coalesce(l.statements_done, 0),"
        " coalesce(l.attempts, 0), l.error"
        " FROM unnest(%s::text[]) AS t(uid)"
        " LEFT JOIN {} l ON l.tenant_uid = t.uid AND l.version = %s"
    ).format(_table(schema))


def select_applied_versions(schema: naming.Identifier, above: bool) -> sql.Composed:
    """Applied versions below (or above) one version, per tenant
    (parameters: uids, version, scope)."""
    comparison = sql.SQL(">" if above else "<")
    return sql.SQL(
        "SELECT tenant_uid, array_agg(version ORDER BY version) FROM {}"
        " WHERE tenant_uid = ANY(%s) AND version {} %s AND scope = %s AND state = 'applied'"
        " GROUP BY tenant_uid"
    ).format(_table(schema), comparison)


_UPSERT = """
    INSERT INTO {table} AS l (tenant_uid, version, namespace, tenant_name, migration,
        description, scope, checksum, state, statements_done, attempts, applied_at,
        duration_ms, applied_by, error, updated_at)
    VALUES (%(uid)s, %(version)s, %(namespace)s, %(tenant)s, %(migration)s, %(description)s,
        %(scope)s, %(checksum)s, %(state)s, %(statements_done)s, %(attempt)s,
        CASE WHEN %(state)s = 'applied' THEN now() END, %(duration_ms)s, %(applied_by)s,
        %(error)s, now())
    ON CONFLICT (tenant_uid, version) DO UPDATE SET
        namespace = EXCLUDED.namespace, tenant_name = EXCLUDED.tenant_name,
        migration = EXCLUDED.migration, description = EXCLUDED.description,
        scope = EXCLUDED.scope, checksum = EXCLUDED.checksum, state = EXCLUDED.state,
        statements_done = {statements_done},
        attempts = l.attempts + EXCLUDED.attempts,
        applied_at = EXCLUDED.applied_at, duration_ms = EXCLUDED.duration_ms,
        applied_by = EXCLUDED.applied_by, error = EXCLUDED.error, updated_at = now()
    {condition}
    RETURNING statements_done
"""


@functools.cache
def upsert(schema: naming.Identifier) -> sql.Composed:
    """Record an outcome (parameters: a ``record`` mapping)."""
    return sql.SQL(_UPSERT).format(
        table=_table(schema),
        statements_done=sql.SQL("EXCLUDED.statements_done"),
        condition=sql.SQL(""),
    )


@functools.cache
def upsert_failure(schema: naming.Identifier) -> sql.Composed:
    """Record a failure unless another worker applied the version meanwhile
    (parameters: a ``record`` mapping)."""
    return sql.SQL(_UPSERT).format(
        table=_table(schema),
        statements_done=sql.SQL("EXCLUDED.statements_done"),
        condition=sql.SQL("WHERE l.state <> 'applied'"),
    )


def begin_stepwise(schema: naming.Identifier) -> sql.Composed:
    """Mark a ``transactional: false`` run as started; keep how far an earlier
    run of the same text got, so a retry resumes there (parameters: a ``record``)."""
    return sql.SQL(_UPSERT).format(
        table=_table(schema),
        statements_done=sql.SQL(
            "CASE WHEN l.checksum = EXCLUDED.checksum THEN l.statements_done ELSE 0 END"
        ),
        condition=sql.SQL(""),
    )


@functools.cache
def record_step(schema: naming.Identifier) -> sql.Composed:
    """One more statement done (parameters: count, tenant uid, version)."""
    return sql.SQL(
        "UPDATE {} SET statements_done = %s, updated_at = now()"
        " WHERE tenant_uid = %s AND version = %s"
    ).format(_table(schema))


def record_rolled_back(schema: naming.Identifier) -> sql.Composed:
    """``down`` ran (parameters: duration ms, applied_by, tenant uid, version)."""
    return sql.SQL(
        "UPDATE {} SET state = 'rolled_back', error = NULL, statements_done = 0,"
        " attempts = attempts + 1, duration_ms = %s, applied_by = %s, updated_at = now()"
        " WHERE tenant_uid = %s AND version = %s"
    ).format(_table(schema))


def record_down_failure(schema: naming.Identifier) -> sql.Composed:
    """``down`` failed; the version stays applied (parameters: error, applied_by, uid, version)."""
    return sql.SQL(
        "UPDATE {} SET error = %s, attempts = attempts + 1, applied_by = %s, updated_at = now()"
        " WHERE tenant_uid = %s AND version = %s"
    ).format(_table(schema))


def reset_failures(schema: naming.Identifier) -> sql.Composed:
    """Make failed rows of one version eligible again (parameters: version, uids)."""
    return sql.SQL(
        "UPDATE {} SET state = CASE WHEN state = 'failed' THEN 'retry' ELSE state END,"
        " error = CASE WHEN state = 'applied' THEN NULL ELSE error END, updated_at = now()"
        " WHERE version = %s AND tenant_uid = ANY(%s)"
        " AND (state = 'failed' OR (state = 'applied' AND error IS NOT NULL))"
    ).format(_table(schema))


def accept_checksum(schema: naming.Identifier) -> sql.Composed:
    """Declare the current text to be what was applied (Flyway's repair)
    (parameters: checksum, version, uids, checksum)."""
    return sql.SQL(
        "UPDATE {} SET checksum = %s, updated_at = now()"
        " WHERE version = %s AND tenant_uid = ANY(%s) AND checksum <> %s"
        " AND (state = 'applied' OR statements_done > 0)"
    ).format(_table(schema))


def highest_applied(schema: naming.Identifier) -> sql.Composed:
    """A tenant's highest applied version of one scope (parameters: uid, scope)."""
    return sql.SQL(
        "SELECT max(version) FROM {} WHERE tenant_uid = %s AND scope = %s AND state = 'applied'"
    ).format(_table(schema))


def summary(schema: naming.Identifier) -> sql.Composed:
    """Per version: counts by state over the live tenants of a namespace, or all, and
    the namespace's shared space (parameters: namespace or NULL, twice). Grouped by
    namespace too: versions are per namespace. The legacy ``shared`` rows are history
    of the legacy schema and left out."""
    return sql.SQL(
        """
        SELECT l.namespace, l.version, max(l.description), max(l.scope),
               count(*) FILTER (WHERE l.state = 'applied'),
               count(*) FILTER (WHERE l.state = 'failed'),
               count(*) FILTER (WHERE l.state IN ('retry', 'running')),
               count(*) FILTER (WHERE l.state = 'rolled_back'),
               count(DISTINCT l.checksum) FILTER (WHERE l.state = 'applied'),
               max(l.applied_at)
        FROM {ledger} l LEFT JOIN {tenants} t ON t.uid = l.tenant_uid
        WHERE ((t.uid IS NOT NULL AND t.retained_at IS NULL)
               OR l.tenant_uid = {prefix} || l.namespace)
          AND (%s::text IS NULL OR l.namespace = %s)
        GROUP BY l.namespace, l.version ORDER BY l.namespace, l.version
        """
    ).format(
        ledger=_table(schema),
        tenants=sql.Identifier(schema, "tenants"),
        prefix=sql.Literal(SHARED_PREFIX),
    )


def history(schema: naming.Identifier) -> sql.Composed:
    """Every row of the tenants of one name (parameters: namespace or NULL twice, name)."""
    return sql.SQL(
        "SELECT namespace, tenant_name, version, state, checksum, attempts, duration_ms,"
        " applied_by, applied_at, error FROM {}"
        " WHERE (%s::text IS NULL OR namespace = %s) AND tenant_name = %s"
        " ORDER BY namespace, version"
    ).format(_table(schema))


def record(
    *,
    uid: str,
    version: int,
    namespace: str,
    tenant: str,
    migration: str,
    description: str,
    scope: str,
    checksum: str,
    state: State,
    applied_by: str,
    attempt: bool,
    statements_done: int = 0,
    duration_ms: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The parameters of ``upsert`` and ``begin_stepwise``."""
    return {
        "uid": uid,
        "version": version,
        "namespace": namespace,
        "tenant": tenant,
        "migration": migration,
        "description": description,
        "scope": scope,
        "checksum": checksum,
        "state": state.value,
        "statements_done": statements_done,
        "attempt": 1 if attempt else 0,
        "duration_ms": duration_ms,
        "applied_by": applied_by,
        "error": error,
    }


def parse_row(raw: Sequence[Any]) -> Row:
    """A ``Row`` from ``select_row``'s columns."""
    uid, state, checksum, done, attempts, error = raw
    return Row(uid, State(state) if state else None, checksum, int(done), int(attempts), error)


def fetch_row(
    conn: psycopg.Connection[Any], schema: naming.Identifier, uid: str, version: int
) -> Row:
    """The row of one tenant and version (a plain read: nothing is locked; callers
    hold the tenant's advisory lock)."""
    raw = conn.execute(select_row(schema), (uid, version)).fetchone()
    return parse_row(raw) if raw else Row(uid, None)


def fetch_rows(
    conn: psycopg.Connection[Any], schema: naming.Identifier, uids: Sequence[str], version: int
) -> dict[str, Row]:
    """The rows of many tenants for one version, in one query."""
    rows = conn.execute(select_rows(schema), (list(uids), version)).fetchall()
    return {row[0]: parse_row(row) for row in rows}


def applied_versions(
    conn: psycopg.Connection[Any],
    schema: naming.Identifier,
    uids: Sequence[str],
    version: int,
    scope: str,
    above: bool = False,
) -> dict[str, set[int]]:
    """Applied versions below (or above) ``version`` for many tenants, in one query."""
    rows = conn.execute(
        select_applied_versions(schema, above), (list(uids), version, scope)
    ).fetchall()
    return {uid: set(versions) for uid, versions in rows}


def summarise(
    conn: psycopg.Connection[Any], schema: naming.Identifier, namespace: str | None
) -> list[dict[str, Any]]:
    """``summary`` as dicts, for the CLI."""
    keys = (
        "namespace",
        "version",
        "description",
        "scope",
        "applied",
        "failed",
        "retrying",
        "rolled_back",
        "checksums",
        "last_applied",
    )
    rows = conn.execute(summary(schema), (namespace, namespace)).fetchall()
    return [dict(zip(keys, row, strict=True)) for row in rows]


def tenant_history(
    conn: psycopg.Connection[Any], schema: naming.Identifier, namespace: str | None, name: str
) -> list[dict[str, Any]]:
    """``history`` as dicts, for the CLI."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(history(schema), (namespace, namespace, name)).fetchall()


@functools.cache
def select_row_and_missing(schema: naming.Identifier) -> sql.Composed:
    """One row, ``NULL`` state if none, which required versions the tenant lacks, and
    whether any version is applied there (so its marker table exists: the engine then
    writes the marker without reading it first) (parameters: tenant uid, version,
    required versions, tenant uid, tenant uid)."""
    return sql.SQL(
        "SELECT %s::text, l.state, l.checksum, coalesce(l.statements_done, 0),"
        " coalesce(l.attempts, 0), l.error,"
        " ARRAY(SELECT r.v FROM unnest(%s::bigint[]) AS r(v) WHERE NOT EXISTS"
        " (SELECT 1 FROM {table} a WHERE a.tenant_uid = %s AND a.version = r.v"
        " AND a.state = 'applied') ORDER BY r.v),"
        " EXISTS (SELECT 1 FROM {table} a WHERE a.tenant_uid = %s AND a.state = 'applied')"
        " FROM (SELECT 1) AS one LEFT JOIN {table} l ON l.tenant_uid = %s AND l.version = %s"
    ).format(table=_table(schema))


def parse_row_and_missing(raw: Sequence[Any]) -> tuple[Row, list[int], bool]:
    """The row, the missing versions and whether any version is applied, from
    ``select_row_and_missing``'s columns."""
    return parse_row(raw[:6]), [int(v) for v in raw[6]], bool(raw[7])


def row_and_missing_params(
    uid: str, version: int, required: Sequence[int]
) -> tuple[str, list[int], str, str, str, int]:
    """The parameters of ``select_row_and_missing``."""
    return uid, list(required), uid, uid, uid, version
