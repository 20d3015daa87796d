"""Markers beside a tenant's data: which versions committed there.

A migration's change commits on the tenant's own session (as its owner
role) and its ledger row on the operator's; a marker row written in the
same transaction as the change tells a retry after a crash between the two
commits that the change is there (like Flyway's history table, it lives
with the data it describes). The table sits in the tenant's own schema
(``public`` of a ``database`` tenant, the shared schema for shared-scope
migrations), owned by the owner role; the login role and PUBLIC have no
privilege on it. The owner can change it, as it can change anything of its
own tenant: a marker tells about that tenant alone. The owner may also grant
it to others (its login role, PUBLIC); while anyone but the owner may write
it, a marker is no proof and the engine reports drift instead of trusting it.
"""

from psycopg import sql

from tenantdb.core import scoping, shared

MARKER_TABLE = shared.MARKER_TABLE


def _table(target: scoping.TenantLocation, shared_schema: str) -> sql.Identifier:
    return sql.Identifier(target.search_path(shared_schema), MARKER_TABLE)


def qualified_name(target: scoping.TenantLocation, shared_schema: str) -> str:
    """``schema.table`` of the target's marker table, for ``to_regclass``."""
    return _table(target, shared_schema).as_string(None)


def create_markers(
    target: scoping.TenantLocation, shared_schema: str, readers: list[str]
) -> sql.Composed:
    """The marker table, closed to ``readers`` (the roles default privileges reach)."""
    table = _table(target, shared_schema)
    revoke = sql.SQL(", ").join([sql.SQL("PUBLIC"), *(sql.Identifier(r) for r in readers)])
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {table} (version bigint PRIMARY KEY,"
        " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
        " rolled_back_at timestamptz);\n"
        "REVOKE ALL ON {table} FROM {revoke}"
    ).format(table=table, revoke=revoke)


def writers_query() -> sql.SQL:
    """Roles other than its owner that may write the marker table (parameter: its
    ``qualified_name``). Every catalog and operator is qualified: it runs on the
    tenant's session, whose search path the user's SQL may have filled."""
    return sql.SQL(
        "SELECT pg_catalog.array_agg(DISTINCT CASE WHEN a.grantee OPERATOR(pg_catalog.=)"
        " 0::pg_catalog.oid THEN 'PUBLIC' ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END)"
        " FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a"
        " WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)"
        " AND a.grantee OPERATOR(pg_catalog.<>) c.relowner"
        " AND a.privilege_type OPERATOR(pg_catalog.=) ANY"
        " (ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])"
    )


def select_marker(target: scoping.TenantLocation, shared_schema: str) -> sql.Composed:
    """The marker of one version: its checksum, and whether its ``down`` committed
    (parameter: version)."""
    return sql.SQL("SELECT checksum, rolled_back_at IS NOT NULL FROM {} WHERE version = %s").format(
        _table(target, shared_schema)
    )


def insert_new_marker(target: scoping.TenantLocation, shared_schema: str) -> sql.Composed:
    """Mark a version applied where it has no marker yet (parameters: version, checksum).

    Fails with a unique violation if the version has a marker (applied or rolled
    back) and with an undefined table if there is no marker table: the engine
    writes it first in the change's transaction without reading the table, and
    reads it only after such a failure (``running.Run.try_in_transaction``).
    """
    return sql.SQL("INSERT INTO {} (version, checksum) VALUES (%s, %s)").format(
        _table(target, shared_schema)
    )


def insert_marker(target: scoping.TenantLocation, shared_schema: str) -> sql.Composed:
    """Mark a version applied (parameters: version, checksum)."""
    return sql.SQL(
        "INSERT INTO {} (version, checksum) VALUES (%s, %s)"
        " ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now(),"
        " rolled_back_at = NULL"
    ).format(_table(target, shared_schema))


def mark_rolled_back(target: scoping.TenantLocation, shared_schema: str) -> sql.Composed:
    """Record that a version's ``down`` committed (parameters: version, checksum).

    Kept as a row, not deleted: a retry after a crash before the ledger write
    tells "its down ran" (this row) from "applied before markers existed" (no
    row at all), and runs ``down`` only in the second case.
    """
    return sql.SQL(
        "INSERT INTO {} (version, checksum, rolled_back_at) VALUES (%s, %s, now())"
        " ON CONFLICT (version) DO UPDATE SET rolled_back_at = now()"
    ).format(_table(target, shared_schema))


def readers(target: scoping.TenantLocation, shared_roles: list[str]) -> list[str]:
    """Roles that default privileges would give the marker table to."""
    if target.isolation == "shared":
        return shared_roles
    return [target.login_role]


def exists_query() -> sql.SQL:
    """Whether the marker table exists (parameter: its qualified name)."""
    return sql.SQL("SELECT pg_catalog.to_regclass(%s) IS NOT NULL")
