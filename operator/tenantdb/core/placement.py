"""Which server each tenant lives on: the placement directory, on the operator's own server.

Every server keeps its own tenants' registry rows and ledgers in its control
schema, so a server that is down affects only its tenants. The directory is
the one table that spans servers: a row per tenant naming its server,
written before anything is created there and never changed afterwards, so a
tenant cannot move silently. Choosing a server and writing its row happen
under one lock, so two tenants placed at once cannot both take a server's
last place.
"""

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import errors, locking, naming

TABLE = "placements"
LOCK = "placement"
"""Lock key serialising choice and record, so capacity holds under concurrency."""
DEFAULT = "default"
"""The operator's own server's name."""


class ServerFull(errors.TenantDBError):
    """The named server, or every server the selector matches, has no room."""

    reason = "ServerFull"
    permanent = False


class NoServer(errors.TenantDBError):
    """No Ready DatabaseServer of that name, or none matching the selector."""

    reason = "ServerNotFound"
    permanent = False


def table_step(schema: naming.Identifier) -> sql.Composed:
    """Registry step 7: the directory (used on the operator's own server only)."""
    return sql.SQL(
        """
        CREATE TABLE {table} (
            tenant_uid text PRIMARY KEY,
            namespace  text NOT NULL,
            name       text NOT NULL,
            isolation  text NOT NULL,
            server     text NOT NULL,
            placed_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX placements_server ON {table} (server, isolation)
        """
    ).format(table=sql.Identifier(schema, TABLE))


def domain_step(schema: naming.Identifier) -> sql.Composed:
    """Registry step 8: each tenant's domain in the directory, unique across servers."""
    return sql.SQL(
        "ALTER TABLE {table} ADD COLUMN domain text;"
        " CREATE UNIQUE INDEX placements_domain ON {table} (domain) WHERE domain IS NOT NULL"
    ).format(table=sql.Identifier(schema, TABLE))


@dataclass(frozen=True)
class Candidate:
    """A server placement may choose, with its limits (None: no limit)."""

    name: str
    tenants: int | None = None
    per_isolation: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def unlimited(self) -> bool:
        """Whether the server takes any number of tenants of every mode."""
        return self.tenants is None and all(v is None for v in self.per_isolation.values())

    def has_room(self, placed: Mapping[str, int], isolation: str) -> bool:
        """Whether one more ``isolation`` tenant fits, given what is ``placed`` by mode."""
        total_ok = self.tenants is None or sum(placed.values()) < self.tenants
        limit = self.per_isolation.get(isolation)
        return total_ok and (limit is None or placed.get(isolation, 0) < limit)


@dataclass(frozen=True)
class Tenant:
    """The tenant being placed."""

    uid: str
    namespace: str
    name: str
    isolation: str
    domain: str | None = None
    """Unique across every server: the directory holds it (each registry only sees its own)."""


def located(conn: psycopg.Connection[Any], schema: naming.Identifier, uid: str) -> str | None:
    """The server a tenant was placed on, or None if it never was."""
    query = sql.SQL("SELECT server FROM {} WHERE tenant_uid = %s").format(
        sql.Identifier(schema, TABLE)
    )
    row = conn.execute(query, (uid,)).fetchone()
    return str(row[0]) if row else None


def place(
    conn: psycopg.Connection[Any],
    schema: naming.Identifier,
    tenant: Tenant,
    candidates: Sequence[Candidate],
    why: str,
) -> str:
    """The tenant's server: where it already is, else the candidate with room that
    holds the fewest tenants (ties by name), recorded. ``why`` names the candidates
    for the error when none has room (``ServerFull``) or none is given (``NoServer``)."""
    found = located(conn, schema, tenant.uid)
    if found is not None:
        claim_domain(conn, schema, tenant)
        return found
    with _claiming(conn, schema, tenant):
        if len(candidates) == 1 and candidates[0].unlimited:
            record(conn, schema, tenant, candidates[0].name)  # no room to race for
            return located(conn, schema, tenant.uid) or candidates[0].name
        return _choose(conn, schema, tenant, candidates, why)


def _choose(
    conn: psycopg.Connection[Any],
    schema: naming.Identifier,
    tenant: Tenant,
    candidates: Sequence[Candidate],
    why: str,
) -> str:
    """Choose and record under the placement lock, so capacity holds when many place."""
    with conn.transaction():
        locking.take(conn, schema, LOCK)
        found = located(conn, schema, tenant.uid)
        if found is not None:
            return found
        if not candidates:
            raise NoServer(f"no server to place the tenant on: {why}")
        placed = counts(conn, schema, [c.name for c in candidates])
        roomy = [c for c in candidates if c.has_room(placed.get(c.name, {}), tenant.isolation)]
        if not roomy:
            raise ServerFull(f"{why}: no room for another {tenant.isolation} tenant")
        chosen = min(roomy, key=lambda c: (sum(placed.get(c.name, {}).values()), c.name))
        record(conn, schema, tenant, chosen.name)
        return chosen.name


def on_default(conn: psycopg.Connection[Any], schema: naming.Identifier, tenant: Tenant) -> str:
    """The server of a tenant that names none: its row if it has one, else a new row
    naming the operator's own server, in one round trip. The new row commits without
    waiting for its flush (``synchronous_commit`` off for that transaction): the
    tenant's provisioning on this same server commits durably after it, and a durable
    commit flushes all the WAL before it; a crash in between loses a row whose tenant
    has nothing yet, and the next reconcile writes it again. Its domain is claimed (or
    changed) in the same statement."""
    table = sql.Identifier(schema, TABLE)
    with _claiming(conn, schema, tenant):
        row = conn.execute(
            sql.SQL(
                "WITH quick AS (SELECT pg_catalog.set_config('synchronous_commit', 'off', true)),"
                " added AS (INSERT INTO {table} AS p"
                " (tenant_uid, namespace, name, isolation, server, domain)"
                " SELECT %(uid)s, %(namespace)s, %(name)s, %(isolation)s, %(server)s, %(domain)s"
                " FROM quick ON CONFLICT (tenant_uid) DO UPDATE SET domain = EXCLUDED.domain"
                " WHERE p.domain IS DISTINCT FROM EXCLUDED.domain RETURNING server)"
                " SELECT server FROM added"
                " UNION ALL SELECT server FROM {table} WHERE tenant_uid = %(uid)s LIMIT 1"
            ).format(table=table),
            {
                "uid": tenant.uid,
                "namespace": tenant.namespace,
                "name": tenant.name,
                "isolation": tenant.isolation,
                "server": DEFAULT,
                "domain": tenant.domain,
            },
        )
    found = row.fetchone()
    return str(found[0]) if found else DEFAULT


def record(
    conn: psycopg.Connection[Any], schema: naming.Identifier, tenant: Tenant, server: str
) -> None:
    """Write the tenant's row (a tenant already placed keeps its own)."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (tenant_uid, namespace, name, isolation, server, domain)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_uid) DO NOTHING"
        ).format(sql.Identifier(schema, TABLE)),
        (tenant.uid, tenant.namespace, tenant.name, tenant.isolation, server, tenant.domain),
    )


def claim_domain(conn: psycopg.Connection[Any], schema: naming.Identifier, tenant: Tenant) -> None:
    """Hold the tenant's domain (or none) in the directory; ``DomainConflict`` if another
    tenant, on whichever server, holds it."""
    with _claiming(conn, schema, tenant):
        conn.execute(
            sql.SQL(
                "UPDATE {} SET domain = %s WHERE tenant_uid = %s AND domain IS DISTINCT FROM %s"
            ).format(sql.Identifier(schema, TABLE)),
            (tenant.domain, tenant.uid, tenant.domain),
        )


@contextmanager
def _claiming(
    conn: psycopg.Connection[Any], schema: naming.Identifier, tenant: Tenant
) -> Iterator[None]:
    """A domain another tenant holds becomes ``DomainConflict``, naming the holder."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        holder = conn.execute(
            sql.SQL(
                "SELECT namespace || '/' || name FROM {} WHERE domain = %s AND tenant_uid <> %s"
            ).format(sql.Identifier(schema, TABLE)),
            (tenant.domain, tenant.uid),
        ).fetchone()
        by = f" by tenant {holder[0]}" if holder else ""
        raise errors.DomainConflict(f"domain {tenant.domain!r} is already used{by}") from exc


def counts(
    conn: psycopg.Connection[Any], schema: naming.Identifier, servers: Sequence[str] | None = None
) -> dict[str, dict[str, int]]:
    """Tenants placed, by server and isolation mode (only ``servers``, if given)."""
    query = sql.SQL("SELECT server, isolation, count(*) FROM {} GROUP BY server, isolation")
    rows = conn.execute(query.format(sql.Identifier(schema, TABLE))).fetchall()
    found: dict[str, Counter[str]] = {}
    for server, isolation, count in rows:
        if servers is None or server in servers:
            found.setdefault(str(server), Counter())[str(isolation)] = int(count)
    return {server: dict(by_mode) for server, by_mode in found.items()}


def hosted(
    conn: psycopg.Connection[Any], schema: naming.Identifier, server: str, limit: int = 5
) -> tuple[int, list[str]]:
    """How many tenants live on ``server``, and the first ``limit`` as namespace/name."""
    table = sql.Identifier(schema, TABLE)
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE server = %s").format(table), (server,)
    ).fetchone()
    names = conn.execute(
        sql.SQL(
            "SELECT namespace || '/' || name FROM {} WHERE server = %s"
            " ORDER BY namespace, name LIMIT %s"
        ).format(table),
        (server, limit),
    ).fetchall()
    return (int(row[0]) if row else 0), [str(n[0]) for n in names]


def servers_of(
    conn: psycopg.Connection[Any], schema: naming.Identifier, namespace: str
) -> set[str]:
    """The servers a namespace's tenants live on (the operator's own always among them:
    its shared space and the tenants from before the directory)."""
    rows = conn.execute(
        sql.SQL("SELECT DISTINCT server FROM {} WHERE namespace = %s").format(
            sql.Identifier(schema, TABLE)
        ),
        (namespace,),
    ).fetchall()
    return {DEFAULT} | {str(row[0]) for row in rows}


def forget(conn: psycopg.Connection[Any], schema: naming.Identifier, uid: str) -> None:
    """Drop a deleted tenant's row (its data, if retained, stays in its server's registry)."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE tenant_uid = %s").format(sql.Identifier(schema, TABLE)),
        (uid,),
    )


def adopt_local(conn: psycopg.Connection[Any], schema: naming.Identifier) -> None:
    """Rows for the tenants the operator's own server held before the directory existed."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {placements} (tenant_uid, namespace, name, isolation, server)"
            " SELECT uid, namespace, name, isolation, %s FROM {tenants}"
            " WHERE retained_at IS NULL ON CONFLICT (tenant_uid) DO NOTHING"
        ).format(
            placements=sql.Identifier(schema, TABLE), tenants=sql.Identifier(schema, "tenants")
        ),
        (DEFAULT,),
    )
