"""Markers in a ``database`` tenant's own database: which versions committed there.

A ``database`` tenant's change commits in its own database and the ledger
row in the operator's; a marker row written in the same transaction as the
change tells a retry after a crash between the two commits that the change
is there. The table lives in a schema named like the control schema,
owned by the operator, invisible to the tenant's roles.
"""

from psycopg import sql

from tenantdb.core import naming

MARKER_TABLE = "applied_migrations"


def create_markers(schema: naming.Identifier) -> sql.Composed:
    """The marker table in a tenant's database, invisible to the tenant's roles."""
    return sql.SQL(
        "CREATE SCHEMA IF NOT EXISTS {schema};\n"
        "REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;\n"
        "CREATE TABLE IF NOT EXISTS {table} (version bigint PRIMARY KEY,"
        " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    ).format(schema=sql.Identifier(schema), table=sql.Identifier(schema, MARKER_TABLE))


def markers_exist() -> sql.Composed:
    """Whether a tenant's database has the marker table (parameter: control schema)."""
    return sql.SQL("SELECT to_regclass(format('%%I.%%I', %s::text, {}::text)) IS NOT NULL").format(
        sql.Literal(MARKER_TABLE)
    )


def select_marker(schema: naming.Identifier) -> sql.Composed:
    """The marker of one version (parameter: version)."""
    return sql.SQL("SELECT checksum FROM {} WHERE version = %s FOR UPDATE").format(
        sql.Identifier(schema, MARKER_TABLE)
    )


def insert_marker(schema: naming.Identifier) -> sql.Composed:
    """Mark a version applied (parameters: version, checksum)."""
    return sql.SQL(
        "INSERT INTO {} (version, checksum) VALUES (%s, %s)"
        " ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()"
    ).format(sql.Identifier(schema, MARKER_TABLE))


def delete_marker(schema: naming.Identifier) -> sql.Composed:
    """Unmark a version after its ``down`` (parameter: version)."""
    return sql.SQL("DELETE FROM {} WHERE version = %s").format(sql.Identifier(schema, MARKER_TABLE))
