"""Shared spaces: one shared schema and its three roles per namespace, made on demand.

A namespace gets its space (``naming.shared_names``) when its first
``shared`` tenant is provisioned or its first ``scope: shared`` migration
runs: the roles, the operator's membership of the owner (it acts for the
owner the way it acts for a tenant's owner role), the owner's derived
password (``scope: shared`` migrations log in as it), and the schema's
bootstrap (``shared.bootstrap``). Each space is recorded in the control
schema (registry step 5) so that an operator start can bring every
space's functions up to date and the CLI can list them.

The legacy space (``tenantdb_shared``), shared by every namespace in
earlier versions, is never created here any more: where it exists it is
kept up to date for the tenants still in it (``prepare_legacy``).

It touches only the catalogs, its own control table and the space's schema.
"""

from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import locking, naming, provisioning, securing, shared

TABLE = "shared_spaces"
"""Created by step 5 of ``registry.CONTROL_STEPS``."""

Connection = psycopg.Connection[Any]


def table_step(schema: naming.Identifier) -> sql.Composed:
    """Registry step 5: one row per namespace that has a shared space."""
    return sql.SQL(
        """
        CREATE TABLE {table} (
            namespace    text PRIMARY KEY,
            schema_name  text NOT NULL UNIQUE,
            owner_role   text NOT NULL UNIQUE,
            members_role text NOT NULL UNIQUE,
            pooled_role  text NOT NULL UNIQUE,
            created_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    ).format(table=sql.Identifier(schema, TABLE))


def record(schema: naming.Identifier) -> sql.Composed:
    """Remember a namespace's space (parameters: namespace, schema, owner, members, pooled)."""
    return sql.SQL(
        "INSERT INTO {} (namespace, schema_name, owner_role, members_role, pooled_role)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (namespace) DO NOTHING"
    ).format(sql.Identifier(schema, TABLE))


def present(schema: naming.Identifier) -> sql.Composed:
    """Whether a namespace's space is recorded and its schema exists (parameter: namespace)."""
    return sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {} s JOIN pg_namespace n ON n.nspname = s.schema_name"
        " WHERE s.namespace = %s)"
    ).format(sql.Identifier(schema, TABLE))


def listing(schema: naming.Identifier) -> sql.Composed:
    """Every recorded space, by namespace."""
    return sql.SQL(
        "SELECT namespace, schema_name, owner_role, members_role, pooled_role FROM {}"
        " ORDER BY namespace"
    ).format(sql.Identifier(schema, TABLE))


def recorded(conn: Connection, control: naming.Identifier) -> dict[str, naming.SharedNames]:
    """Every recorded space by namespace."""
    rows = conn.execute(listing(control)).fetchall()
    return {
        ns: naming.SharedNames(
            naming.identifier(schema),
            naming.identifier(owner),
            naming.identifier(members),
            naming.identifier(pooled),
        )
        for ns, schema, owner, members, pooled in rows
    }


def ensure(
    conn: Connection,
    control: naming.Identifier,
    namespace: str,
    prefix: naming.Identifier,
    verifier: str,
) -> shared.Space:
    """The namespace's space, created first if missing (in its own transaction).

    ``prefix``: the legacy schema's name, the start of every space's.
    ``verifier``: the SCRAM verifier of the owner's derived password. Cheap
    when the space exists (one query); creation holds the bootstrap lock, as
    it updates catalog rows other provisioning touches too.
    """
    space = naming.shared_names(namespace, prefix)
    found = conn.execute(present(control), (namespace,)).fetchone()
    if found and found[0]:
        return space
    with conn.transaction():
        locking.take(conn, control, locking.BOOTSTRAP)
        build(conn, space, verifier)
        conn.execute(
            record(control),
            (namespace, space.schema, space.owner_role, space.members_role, space.pooled_role),
        )
    return space


def build(conn: Connection, space: shared.Space, verifier: str) -> None:
    """Roles, the operator's membership of the owner, CONNECT, the schema's bootstrap
    and its tables' isolation (idempotent; the caller holds the bootstrap lock)."""
    version, public_connects, database = _server_facts(conn)
    for role in space.roles:
        if conn.execute(provisioning.role_exists(), (role,)).fetchone() is None:
            conn.execute(shared.create_role(role))
    conn.execute(provisioning.allow_login(space.owner_role, verifier))
    conn.execute(provisioning.join_operator(space.owner_role, version))
    if not public_connects:
        conn.execute(grant_connect(space, database))
    conn.execute(shared.bootstrap(space))
    securing.secure_tables(conn, space)


def prepare_legacy(conn: Connection, legacy_schema: naming.Identifier, verifier: str) -> bool:
    """Keep the legacy space current where it exists; False if there is none."""
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (legacy_schema,))
    if row.fetchone() is None:
        return False
    build(conn, shared.legacy(legacy_schema), verifier)
    return True


def grant_connect(space: shared.Space, database: str) -> sql.Composed:
    """The owner and the pooled group's applications may connect (only where CONNECT was
    revoked from PUBLIC; the tenants' login roles get theirs when provisioned)."""
    return sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
        sql.Identifier(database),
        sql.Identifier(space.owner_role),
        sql.Identifier(space.pooled_role),
    )


def _server_facts(conn: Connection) -> tuple[int, bool, str]:
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int,"
        " has_database_privilege('public', current_database(), 'CONNECT'), current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0]), bool(row[1]), str(row[2])
