"""What the catalogs say about a tenant's tables: which, in which order, on what they depend.

Every query qualifies ``pg_catalog``: it runs on sessions as a tenant's roles,
whose ``search_path`` is pinned to ``pg_catalog, pg_temp`` but which may
hold objects the tenant made.
"""

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

_TABLES = sql.SQL(
    "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
    " AND (n.nspname OPERATOR(pg_catalog.=) ANY(%(schemas)s::text[])"
    "      OR (%(all)s AND n.nspname OPERATOR(pg_catalog.<>) ALL(%(system)s::text[])"
    "          AND n.nspname::text NOT LIKE 'pg\\_%%'))"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"
    "   WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
    "   AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e')"
    " ORDER BY 1, 2"
)


def tables(
    conn: psycopg.Connection[Any], schemas: Sequence[str], every_schema: bool = False
) -> list[tuple[str, str]]:
    """(schema, table) of the ordinary and partitioned tables (partitions through their
    parent) of ``schemas``, or of every non-system schema; extensions' tables left out."""
    params = {"schemas": list(schemas), "all": every_schema, "system": list(SYSTEM_SCHEMAS)}
    return [(str(s), str(t)) for s, t in conn.execute(_TABLES, params).fetchall()]


def summary_name(schema: str, table: str, home: str) -> str:
    """A table's name in the manifest: unqualified in the tenant's own schema."""
    return table if schema == home else f"{schema}.{table}"


def split_name(name: str, home: str) -> tuple[str, str]:
    """``summary_name`` back to (schema, table)."""
    schema, _, table = name.rpartition(".")
    return (schema or home, table)


def lock_statement(relations: Sequence[tuple[str, str]]) -> sql.Composed:
    """ACCESS SHARE on the relations (what pg_dump takes): DDL waits, reads and writes
    go on."""
    names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in relations)
    return sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(names)


_EXTENSIONS_USED = sql.SQL(
    """
    WITH objects AS (
        SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid AS objid
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s::text[])
        UNION ALL
        SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s::text[])
        UNION ALL
        SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = ANY(%(schemas)s::text[])
        UNION ALL
        SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid
        FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_namespace n
          ON n.oid = k.connamespace WHERE n.nspname = ANY(%(schemas)s::text[])
        UNION ALL
        SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid
        FROM pg_catalog.pg_attrdef a JOIN pg_catalog.pg_class c ON c.oid = a.adrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s::text[])
        UNION ALL
        SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass, g.oid
        FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s::text[])
    )
    SELECT DISTINCT e.extname::text
    FROM objects o
    JOIN pg_catalog.pg_depend d ON d.classid = o.classid AND d.objid = o.objid
    JOIN pg_catalog.pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid
         AND x.deptype = 'e'
    JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid
    WHERE d.deptype <> 'e'
    UNION
    SELECT e.extname::text FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE n.nspname = ANY(%(schemas)s::text[])
    ORDER BY 1
    """
)


def extensions_used(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    """Extensions whose objects the schemas' tables, functions, types, constraints,
    defaults or triggers depend on, and those installed into the schemas: ``pg_dump
    -n`` dumps none of them, and a restore needs them first."""
    rows = conn.execute(_EXTENSIONS_USED, {"schemas": list(schemas)}).fetchall()
    return [str(row[0]) for row in rows]


def installed_extensions(conn: psycopg.Connection[Any]) -> list[str]:
    """Every extension of the current database but ``plpgsql`` (always there)."""
    rows = conn.execute(
        "SELECT extname::text FROM pg_catalog.pg_extension"
        " WHERE extname OPERATOR(pg_catalog.<>) 'plpgsql' ORDER BY 1"
    ).fetchall()
    return [str(row[0]) for row in rows]
