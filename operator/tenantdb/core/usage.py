"""Each tenant's usage, for every tenant of a server at once, and whether it is healthy.

A sweep (``Survey.sweep``) is a fixed number of catalog queries, whatever the
number of tenants: one over ``pg_class``/``pg_index`` joined to the registry
(size and tables of every ``schema`` tenant and shared space, invalid indexes,
``pg_database_size`` of every ``database`` tenant, the login roles' CONNECTION
LIMIT), one over ``pg_stat_activity`` (live sessions and the oldest open
transaction of every login role). The one thing no query of the operator's
database can see is inside a ``database`` tenant's own database (its tables
and indexes): each sweep visits ``visits`` of those in turn and keeps what it
saw of the others from earlier sweeps.

It reads catalogs and statistics only, never a row of tenant data, so it runs
on the operator's own connections. ``assess`` (pure) turns one tenant's usage
into the problems the ``Healthy`` condition names.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.api import conditions
from tenantdb.core import connecting, naming, pools, shared, tenancy
from tenantdb.settings import UsageSettings


@dataclass(frozen=True)
class TenantUsage:
    """One tenant's usage at ``measured_at`` (the server's clock)."""

    uid: str
    name: str
    namespace: str
    isolation: str
    plan: str
    database: str
    role: str
    """Its login role."""
    bytes: int | None
    """Bytes of its tables, indexes and TOAST as the statistics know them (``relpages``,
    kept by VACUUM and ANALYZE: read without taking a lock on any relation, so a sweep
    never holds up a tenant's DDL or fills the lock table), or of its database
    (``pg_database_size``); None for a ``shared`` tenant (see ``space_bytes``)."""
    tables: int | None
    """Its tables (partitions and tenantdb's bookkeeping not counted); None for a
    ``database`` tenant not visited yet."""
    connections: int
    """Live sessions of its login role."""
    connection_limit: int | None
    """Its login role's CONNECTION LIMIT (the plan's), None if unlimited."""
    oldest_transaction: float | None
    """Seconds the oldest open transaction of its login role has been open."""
    invalid_indexes: tuple[str, ...] | None
    """Indexes left invalid (a failed ``CREATE INDEX CONCURRENTLY``); None: not seen yet."""
    measured_at: datetime
    space_bytes: int | None = None
    """A ``shared`` tenant's whole space, shared with its namespace's other tenants."""


_CATALOG = """
WITH t AS MATERIALIZED (
    SELECT uid, name, namespace, isolation, plan, schema_name, database_name, login_role
    FROM {tenants} WHERE retained_at IS NULL AND restoring_from IS NULL
    AND (%(namespace)s::text IS NULL OR namespace = %(namespace)s)
    AND (%(uid)s::text IS NULL OR uid = %(uid)s)
),
homes AS MATERIALIZED (
    SELECT DISTINCT n.oid FROM pg_catalog.pg_namespace n JOIN t ON n.nspname = t.schema_name
    WHERE t.isolation <> 'database'
),
rel AS (
    SELECT c.relnamespace,
        count(*) FILTER (WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                         AND c.relname <> ALL (%(bookkeeping)s)) AS tables,
        (sum(c.relpages + coalesce(toast.relpages, 0) + coalesce(toast.index_pages, 0))
            FILTER (WHERE c.relkind IN ('r', 'm', 'i'))
            * pg_catalog.current_setting('block_size')::bigint) AS bytes
    FROM pg_catalog.pg_class c
    LEFT JOIN LATERAL (
        SELECT tc.relpages, (SELECT sum(ti.relpages) FROM pg_catalog.pg_index tx
                             JOIN pg_catalog.pg_class ti ON ti.oid = tx.indexrelid
                             WHERE tx.indrelid = tc.oid) AS index_pages
        FROM pg_catalog.pg_class tc WHERE tc.oid = c.reltoastrelid
    ) toast ON true
    WHERE c.relnamespace IN (SELECT oid FROM homes)
    GROUP BY c.relnamespace
),
bad AS (
    SELECT i.relnamespace, array_agg(i.relname::text ORDER BY i.relname) AS names
    FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
    WHERE NOT x.indisvalid AND i.relnamespace IN (SELECT oid FROM homes)
    GROUP BY i.relnamespace
)
SELECT t.uid, t.name, t.namespace, t.isolation, t.plan, t.database_name, t.login_role,
    CASE t.isolation WHEN 'schema' THEN coalesce(rel.bytes, 0)::bigint
        WHEN 'database' THEN pg_catalog.pg_database_size(d.oid) END,
    CASE WHEN t.isolation <> 'database' THEN coalesce(rel.tables, 0)::int END,
    CASE WHEN t.isolation <> 'database' THEN coalesce(bad.names, '{{}}') END,
    CASE WHEN r.rolconnlimit >= 0 THEN r.rolconnlimit END,
    CASE t.isolation WHEN 'shared' THEN coalesce(rel.bytes, 0)::bigint END,
    pg_catalog.clock_timestamp()
FROM t
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema_name AND t.isolation <> 'database'
LEFT JOIN rel ON rel.relnamespace = n.oid
LEFT JOIN bad ON bad.relnamespace = n.oid
LEFT JOIN pg_catalog.pg_database d ON d.datname = t.database_name AND t.isolation = 'database'
LEFT JOIN pg_catalog.pg_roles r ON r.rolname = t.login_role
ORDER BY t.namespace, t.name
"""

_ACTIVITY = """
SELECT a.usename::text, count(*)::int,
    extract(epoch FROM pg_catalog.clock_timestamp() - min(a.xact_start))::float8
FROM pg_catalog.pg_stat_activity a JOIN {tenants} t ON t.login_role = a.usename
WHERE a.backend_type = 'client backend' AND t.retained_at IS NULL
GROUP BY a.usename
"""

_INSIDE_DATABASE = """
SELECT
    (SELECT count(*)::int FROM pg_catalog.pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
     AND NOT c.relispartition AND c.relname <> ALL (%(bookkeeping)s)),
    ARRAY(SELECT i.relname::text FROM pg_catalog.pg_index x
          JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
          WHERE NOT x.indisvalid AND i.relnamespace = 'public'::regnamespace ORDER BY 1)
"""


def catalog_query(control: naming.Identifier) -> sql.Composed:
    """Size, tables, invalid indexes and limit of every live tenant (parameters:
    ``namespace``, ``uid`` (either may be NULL), ``bookkeeping``)."""
    return sql.SQL(_CATALOG).format(tenants=sql.Identifier(control, "tenants"))


def activity_query(control: naming.Identifier) -> sql.Composed:
    """Sessions and the oldest open transaction of every tenant login role with one."""
    return sql.SQL(_ACTIVITY).format(tenants=sql.Identifier(control, "tenants"))


@dataclass(frozen=True)
class Inside:
    """What a visit inside a ``database`` tenant's database saw."""

    tables: int
    invalid_indexes: tuple[str, ...]


@dataclass
class Survey:
    """Sweeps over one server; remembers what it saw inside ``database`` tenants."""

    visits: int = 8
    """``database`` tenants visited per sweep, in turn."""
    inside: dict[str, Inside] = field(default_factory=dict)
    """Last visit of each ``database`` tenant, by UID."""
    _turn: int = 0
    queries: int = 0
    """Statements the last sweep sent (for the benchmark and the docs' figures)."""

    def sweep(
        self, server: tenancy.Server, namespace: str | None = None, uid: str | None = None
    ) -> list[TenantUsage]:
        """Every live tenant's usage (of one namespace or one tenant, if given)."""
        params = {"namespace": namespace, "uid": uid, "bookkeeping": list(BOOKKEEPING)}
        with connecting.connection(server.pool) as conn:
            rows = conn.execute(catalog_query(server.control_schema), params).fetchall()
            activity = _activity(conn, server.control_schema)
        self.queries = 2
        usages = [_usage(row, activity) for row in rows]
        self.visit(server, [u for u in usages if u.isolation == "database"])
        return [self._completed(u) for u in usages]

    def visit(self, server: tenancy.Server, tenants: Sequence[TenantUsage]) -> None:
        """Look inside the next ``visits`` database tenants (all of them if fewer)."""
        if not tenants or self.visits <= 0:
            return
        count = min(self.visits, len(tenants))
        start = self._turn % len(tenants)
        chosen = [tenants[(start + i) % len(tenants)] for i in range(count)]
        self._turn = start + count
        for tenant in chosen:
            self.inside[tenant.uid] = look_inside(server, tenant.database)
            self.queries += 1
        known = {t.uid for t in tenants}
        for gone in [u for u in self.inside if u not in known]:
            del self.inside[gone]

    def _completed(self, usage: TenantUsage) -> TenantUsage:
        seen = self.inside.get(usage.uid)
        if usage.isolation != "database" or seen is None:
            return usage
        return replace(usage, tables=seen.tables, invalid_indexes=seen.invalid_indexes)


BOOKKEEPING = shared.BOOKKEEPING_TABLES
"""Tables of tenantdb's own (markers, shared spaces' mappings): never counted."""


def look_inside(server: tenancy.Server, database: str) -> Inside:
    """Tables and invalid indexes of a ``database`` tenant's ``public`` schema."""
    with pools.operator_connection(server.url, database) as conn:
        row = conn.execute(_INSIDE_DATABASE, {"bookkeeping": list(BOOKKEEPING)}).fetchone()
    assert row is not None
    return Inside(int(row[0]), tuple(row[1]))


def _activity(
    conn: psycopg.Connection[Any], control: naming.Identifier
) -> dict[str, tuple[int, float | None]]:
    rows = conn.execute(activity_query(control)).fetchall()
    return {str(role): (int(count), age) for role, count, age in rows}


def _usage(row: Sequence[Any], activity: Mapping[str, tuple[int, float | None]]) -> TenantUsage:
    uid, name, namespace, isolation, plan, database, login, size, tables, bad, limit = row[:11]
    space_bytes, measured_at = row[11:]
    connections, oldest = activity.get(login, (0, None))
    return TenantUsage(
        uid=uid,
        name=name,
        namespace=namespace,
        isolation=isolation,
        plan=plan,
        database=database,
        role=login,
        bytes=None if size is None else int(size),
        tables=tables,
        connections=connections,
        connection_limit=limit,
        oldest_transaction=oldest,
        invalid_indexes=None if bad is None else tuple(bad),
        measured_at=measured_at,
        space_bytes=space_bytes,
    )


@dataclass(frozen=True)
class SlowStatement:
    """One normalised statement of a tenant, as ``pg_stat_statements`` keeps it (constants
    are replaced by ``$1``..., so literal values never show)."""

    query: str
    calls: int
    mean_ms: float
    total_ms: float


_STATEMENTS_SCHEMA = (
    "SELECT n.nspname::text FROM pg_catalog.pg_extension e"
    " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
    " WHERE e.extname = 'pg_stat_statements'"
)
_SLOWEST = """
SELECT s.query, s.calls, s.mean_exec_time, s.total_exec_time FROM {view} s
JOIN pg_catalog.pg_roles r ON r.oid = s.userid
JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE r.rolname = %(role)s AND d.datname = %(database)s
ORDER BY s.mean_exec_time DESC LIMIT %(limit)s
"""


def slowest(
    server: tenancy.Server, tenant: TenantUsage, limit: int = 5
) -> list[SlowStatement] | None:
    """The tenant login role's slowest statements by mean time, or None where
    ``pg_stat_statements`` is not installed in the operator's database (or not loaded)."""
    with connecting.connection(server.pool) as conn:
        row = conn.execute(_STATEMENTS_SCHEMA).fetchone()
        if row is None:
            return None
        query = sql.SQL(_SLOWEST).format(view=sql.Identifier(row[0], "pg_stat_statements"))
        params = {"role": tenant.role, "database": tenant.database, "limit": limit}
        try:
            with conn.transaction():
                rows = conn.execute(query, params).fetchall()
        except psycopg.errors.ObjectNotInPrerequisiteState:
            return None  # installed, but not in shared_preload_libraries
    return [SlowStatement(str(q), int(c), float(m), float(t)) for q, c, m, t in rows]


@dataclass(frozen=True)
class Problem:
    """One threshold a tenant crossed."""

    reason: conditions.Reason
    message: str


def near_limit(usage: TenantUsage, thresholds: UsageSettings) -> bool:
    """Whether the tenant's sessions reach ``connections_near`` of its CONNECTION LIMIT."""
    limit = usage.connection_limit
    return limit is not None and usage.connections >= max(limit * thresholds.connections_near, 1)


def assess(usage: TenantUsage, thresholds: UsageSettings) -> list[Problem]:
    """What is wrong with the tenant, most urgent first (empty: healthy). Pure."""
    found = []
    if near_limit(usage, thresholds):
        found.append(
            Problem(
                conditions.Reason.CONNECTIONS_NEAR_LIMIT,
                f"{usage.connections} of {usage.connection_limit} connections in use"
                f" (threshold {thresholds.connections_near:.0%})",
            )
        )
    age = usage.oldest_transaction
    if age is not None and age >= thresholds.transaction_age:
        found.append(
            Problem(
                conditions.Reason.LONG_TRANSACTION,
                f"a transaction has been open for {_duration(age)}"
                f" (threshold {_duration(thresholds.transaction_age)})",
            )
        )
    if usage.invalid_indexes:
        names = ", ".join(usage.invalid_indexes[:5])
        more = len(usage.invalid_indexes) - 5
        found.append(
            Problem(
                conditions.Reason.INVALID_INDEXES,
                f"invalid indexes (a failed CREATE INDEX CONCURRENTLY?): {names}"
                + (f" and {more} more" if more > 0 else ""),
            )
        )
    return found


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}min"
    return f"{seconds:.0f}s"


@dataclass(frozen=True)
class Aggregates:
    """Server-level figures for metrics: a handful of series whatever the tenant count."""

    tenants: dict[tuple[str, str], int]
    """Live tenants by (isolation, plan)."""
    near_limit: dict[str, int]
    """Tenants near their connection limit, by plan."""
    unhealthy: dict[str, int]
    """Tenants with each problem, by reason."""
    bytes: dict[str, int]
    """Bytes by isolation mode (each shared space counted once)."""


def aggregate(usages: Sequence[TenantUsage], thresholds: UsageSettings) -> Aggregates:
    """Counts by plan, reason and mode for one sweep. Pure."""
    tenants: dict[tuple[str, str], int] = {}
    near: dict[str, int] = {}
    unhealthy: dict[str, int] = {reason.value: 0 for reason in PROBLEM_REASONS}
    sizes: dict[str, int] = {"schema": 0, "shared": 0, "database": 0}
    spaces: dict[tuple[str, str], int] = {}
    for u in usages:
        tenants[(u.isolation, u.plan)] = tenants.get((u.isolation, u.plan), 0) + 1
        near.setdefault(u.plan, 0)
        if near_limit(u, thresholds):
            near[u.plan] += 1
        for problem in assess(u, thresholds):
            unhealthy[problem.reason.value] += 1
        if u.bytes is not None:
            sizes[u.isolation] = sizes.get(u.isolation, 0) + u.bytes
        elif u.space_bytes is not None:
            spaces[(u.database, u.namespace)] = u.space_bytes
    sizes["shared"] += sum(spaces.values())
    return Aggregates(tenants, near, unhealthy, sizes)


PROBLEM_REASONS = (
    conditions.Reason.CONNECTIONS_NEAR_LIMIT,
    conditions.Reason.LONG_TRANSACTION,
    conditions.Reason.INVALID_INDEXES,
)
