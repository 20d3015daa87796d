"""The control schema: the tenant registry the operator and the CLI read.

The control schema is created and upgraded by a short list of numbered
steps, applied once each while holding a lock on its version table (a lock
tenants cannot take: they have no privilege on the control schema), so that
several operator replicas starting together do not race.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import creators, errors, locking, naming, placement, spaces

ControlStep = Callable[[naming.Identifier], sql.Composed]


def _tenants_table(schema: naming.Identifier) -> sql.Composed:
    return sql.SQL(
        """
        CREATE TABLE {schema}.tenants (
            uid           text PRIMARY KEY,
            name          text NOT NULL,
            namespace     text NOT NULL,
            display_name  text,
            domain        text,
            isolation     text NOT NULL CHECK (isolation IN ('schema', 'shared', 'database')),
            schema_name   text,
            database_name text NOT NULL,
            owner_role    text NOT NULL,
            login_role    text NOT NULL UNIQUE,
            plan          text NOT NULL,
            suspended     boolean NOT NULL DEFAULT false,
            metadata      jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            retained_at   timestamptz
        );
        CREATE UNIQUE INDEX tenants_domain_key ON {schema}.tenants (domain)
            WHERE domain IS NOT NULL AND retained_at IS NULL;
        CREATE INDEX tenants_namespace_name ON {schema}.tenants (namespace, name);
        """
    ).format(schema=sql.Identifier(schema))


def _seed_history_table(schema: naming.Identifier) -> sql.Composed:
    """Step 2: which seeder, at which version, ran on which tenant (``core.seeding``)."""
    return sql.SQL(
        """
        CREATE TABLE {schema}.seed_history (
            tenant_uid  text NOT NULL REFERENCES {schema}.tenants (uid) ON DELETE CASCADE,
            seeder      text NOT NULL,
            version     integer NOT NULL CHECK (version > 0),
            profile     text NOT NULL CHECK (profile IN ('production', 'development')),
            checksum    text NOT NULL,
            rows        bigint NOT NULL CHECK (rows >= 0),
            seconds     double precision NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now(),
            applied_by  text NOT NULL,
            PRIMARY KEY (tenant_uid, seeder)
        );
        """
    ).format(schema=sql.Identifier(schema))


def _migration_ledger_table(schema: naming.Identifier) -> sql.Composed:
    """Step 3: which migration version ran on which tenant (``core.migrations.ledger``)."""
    return sql.SQL(
        """
        CREATE TABLE {schema}.migration_ledger (
            tenant_uid      text NOT NULL,
            version         bigint NOT NULL CHECK (version > 0),
            namespace       text NOT NULL,
            tenant_name     text NOT NULL,
            migration       text NOT NULL,
            description     text NOT NULL DEFAULT '',
            scope           text NOT NULL CHECK (scope IN ('tenant', 'shared')),
            checksum        text NOT NULL,
            state           text NOT NULL
                CHECK (state IN ('running', 'applied', 'failed', 'retry', 'rolled_back')),
            statements_done integer NOT NULL DEFAULT 0 CHECK (statements_done >= 0),
            attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            applied_at      timestamptz,
            duration_ms     bigint,
            applied_by      text NOT NULL,
            error           text,
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_uid, version)
        );
        CREATE INDEX migration_ledger_version_state ON {schema}.migration_ledger (version, state);
        CREATE INDEX migration_ledger_namespace ON {schema}.migration_ledger (namespace, tenant_name);
        """
    ).format(schema=sql.Identifier(schema))


def _restoring_column(schema: naming.Identifier) -> sql.Composed:
    """Step 6: the Backup a tenant is being restored from; rollouts leave it alone until then."""
    return sql.SQL("ALTER TABLE {}.tenants ADD COLUMN restoring_from text").format(
        sql.Identifier(schema)
    )


CONTROL_STEPS: tuple[ControlStep, ...] = (
    _tenants_table,
    _seed_history_table,
    _migration_ledger_table,
    locking.table_step,
    spaces.table_step,
    _restoring_column,
    placement.table_step,
    placement.domain_step,
)
"""Numbered from 1; append, never edit, so existing installations upgrade."""


def ensure_control_schema(conn: psycopg.Connection[Any], schema: naming.Identifier) -> int:
    """Create or upgrade the control schema; return its version."""
    ident = sql.Identifier(schema)
    _create_version_table(conn, schema)
    with conn.transaction():
        conn.execute(
            sql.SQL("LOCK TABLE {}.control_version IN SHARE ROW EXCLUSIVE MODE").format(ident)
        )
        row = conn.execute(
            sql.SQL("SELECT max(version) FROM {}.control_version").format(ident)
        ).fetchone()
        current = row[0] if row and row[0] is not None else 0
        for number, step in enumerate(CONTROL_STEPS, start=1):
            if number > current:
                conn.execute(step(schema))
                conn.execute(
                    sql.SQL("INSERT INTO {}.control_version (version) VALUES (%s)").format(ident),
                    (number,),
                )
    return len(CONTROL_STEPS)


class ControlSchemaForeign(errors.TenantDBError):
    """The control schema, or something in it, belongs to another role."""

    reason = "ControlSchemaNotOwned"


FOREIGN_OWNERS = """
    SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n
     WHERE n.nspname = %(schema)s AND n.nspowner <> %(me)s
    UNION SELECT pg_get_userbyid(c.relowner) FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(schema)s AND c.relowner <> %(me)s
    UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = %(schema)s AND p.proowner <> %(me)s
       AND NOT (starts_with(p.proname, 'as_creator_')
                AND pg_get_userbyid(p.proowner) = ANY(%(creators)s))
"""
"""Objects of the control schema other roles own; the creators' functions are theirs
(``creators``: the creators themselves are checked there)."""


def _require_own(conn: psycopg.Connection[Any], schema: str) -> None:
    """Refuse a control schema another role made first (a server that already had one):
    its owner could drop and replace the registry, and a trigger it planted on a table
    would run as the operator's role on the operator's next write."""
    me = conn.execute(
        "SELECT oid, rolname::text FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert me is not None
    made = [creators.role_name(str(me[1]), index) for index in range(creators.COUNT)]
    params = {"schema": schema, "me": me[0], "creators": made}
    rows = conn.execute(FOREIGN_OWNERS, params).fetchall()
    if rows:
        owners = ", ".join(sorted(str(row[0]) for row in rows))
        raise ControlSchemaForeign(
            f"schema {schema} already exists and is not the operator's alone (owned by"
            f" {owners}): nothing was written; hand it and its objects to the operator's"
            " role (README, 'The operator's database role'), drop it, or set another"
            " control schema"
        )


def _create_version_table(conn: psycopg.Connection[Any], schema: naming.Identifier) -> None:
    """The schema and its version table; a replica racing us to it makes us try again."""
    ident = sql.Identifier(schema)
    for attempt in range(3):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                _require_own(conn, schema)
                conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(ident))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.control_version (version int NOT NULL)"
                    ).format(ident)
                )
            return
        except psycopg.errors.UniqueViolation:
            if attempt == 2:
                raise


@dataclass(frozen=True)
class TenantRecord:
    """One row of the tenant registry."""

    uid: str
    name: str
    namespace: str
    display_name: str | None
    domain: str | None
    isolation: str
    schema_name: str | None
    database_name: str
    owner_role: str
    login_role: str
    plan: str
    suspended: bool
    metadata: dict[str, str]


def upsert(schema: naming.Identifier) -> sql.Composed:
    """Register a tenant, or bring its row up to date (parameters: a TenantRecord, and
    ``restoring_from``: the Backup a new tenant is restored from, or None; only a new
    row takes it)."""
    return sql.SQL(
        """
        INSERT INTO {schema}.tenants AS t (uid, name, namespace, display_name, domain, isolation,
            schema_name, database_name, owner_role, login_role, plan, suspended, metadata,
            restoring_from)
        VALUES (%(uid)s, %(name)s, %(namespace)s, %(display_name)s, %(domain)s, %(isolation)s,
            %(schema_name)s, %(database_name)s, %(owner_role)s, %(login_role)s, %(plan)s,
            %(suspended)s, %(metadata)s, %(restoring_from)s)
        ON CONFLICT (uid) DO UPDATE SET
            display_name = EXCLUDED.display_name, domain = EXCLUDED.domain, plan = EXCLUDED.plan,
            suspended = EXCLUDED.suspended, metadata = EXCLUDED.metadata,
            retained_at = NULL, updated_at = now()
        WHERE (t.display_name, t.domain, t.plan, t.suspended, t.metadata, t.retained_at)
            IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.domain, EXCLUDED.plan,
                              EXCLUDED.suspended, EXCLUDED.metadata, NULL)
        """
    ).format(schema=sql.Identifier(schema))


def domain_owner(schema: naming.Identifier) -> sql.Composed:
    """Which live tenant holds a domain (parameters: domain, uid to exclude)."""
    return sql.SQL(
        "SELECT namespace || '/' || name FROM {}.tenants"
        " WHERE domain = %s AND uid <> %s AND retained_at IS NULL"
    ).format(sql.Identifier(schema))


def mark_retained(schema: naming.Identifier) -> sql.Composed:
    """Keep a deleted tenant's row, freeing its domain (parameter: uid)."""
    return sql.SQL(
        "UPDATE {}.tenants SET retained_at = now(), updated_at = now() WHERE uid = %s"
    ).format(sql.Identifier(schema))


def restored(schema: naming.Identifier) -> sql.Composed:
    """The tenant's data is restored: rollouts may reach it (parameter: uid)."""
    return sql.SQL(
        "UPDATE {}.tenants SET restoring_from = NULL, updated_at = now() WHERE uid = %s"
    ).format(sql.Identifier(schema))


def restoring(schema: naming.Identifier) -> sql.Composed:
    """The Backup a tenant still waits to be restored from, if any (parameter: uid)."""
    return sql.SQL("SELECT restoring_from FROM {}.tenants WHERE uid = %s").format(
        sql.Identifier(schema)
    )


def forget(schema: naming.Identifier) -> sql.Composed:
    """Remove a dropped tenant's row (parameter: uid)."""
    return sql.SQL("DELETE FROM {}.tenants WHERE uid = %s").format(sql.Identifier(schema))


def fetch(schema: naming.Identifier) -> sql.Composed:
    """One tenant's row (parameter: uid)."""
    return sql.SQL(
        "SELECT uid, name, namespace, display_name, domain, isolation, schema_name, database_name,"
        " owner_role, login_role, plan, suspended, metadata FROM {}.tenants WHERE uid = %s"
    ).format(sql.Identifier(schema))


def load(conn: psycopg.Connection[Any], schema: naming.Identifier, uid: str) -> TenantRecord | None:
    """One tenant's row, live or retained, or None."""
    row = conn.execute(fetch(schema), (uid,)).fetchone()
    return TenantRecord(*row) if row else None


def listing(schema: naming.Identifier) -> sql.Composed:
    """Every tenant, live first, by namespace and name (parameter: namespace or NULL)."""
    return sql.SQL(
        "SELECT uid, name, namespace, display_name, domain, isolation, schema_name, database_name,"
        " owner_role, login_role, plan, suspended, metadata, retained_at IS NOT NULL FROM {}.tenants"
        " WHERE %(namespace)s::text IS NULL OR namespace = %(namespace)s"
        " ORDER BY retained_at IS NOT NULL, namespace, name"
    ).format(sql.Identifier(schema))


def local_roles(conn: psycopg.Connection[Any], schema: naming.Identifier) -> list[str]:
    """The login and owner roles of live tenants that connect to the operator's database
    (every mode but ``database``; a shared tenant's owner is the shared owner)."""
    rows = conn.execute(
        sql.SQL(
            "SELECT login_role FROM {tenants} WHERE retained_at IS NULL AND isolation <> 'database'"
            " UNION SELECT owner_role FROM {tenants}"
            " WHERE retained_at IS NULL AND isolation = 'schema' ORDER BY 1"
        ).format(tenants=sql.Identifier(schema, "tenants"))
    ).fetchall()
    return [str(r[0]) for r in rows]
