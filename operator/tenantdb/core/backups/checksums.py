"""Per-table row counts and order-independent checksums, read in a caller's snapshot.

A table's checksum is the sum, over its rows, of the md5 of the row's text
form (``ROW(c1, c2, ...)::text`` over the *covered* columns, in column
order), taken as two signed 64-bit halves summed separately and reduced
modulo 2**64: no sort, one sequential scan, and the same rows give the same
sum in any order (a duplicated row counts twice; nothing cancels out). It
covers every value's text output, NULLs included, so a changed, missing or
extra row changes it; it does not cover what is not a row value (indexes,
constraints, grants, sequence positions, physical order).

Covered columns: every column of the table, except ``tenant_id`` for shared
tables (``exclude``), whose value is the only thing a restore into another
tenant changes; surrogate keys are not re-keyed (shared keys start with
``tenant_id``), so they stay covered. The caller runs this inside the
transaction whose snapshot the dump reads, on a session with no more rights
than the tenant (a shared tenant's rows through its own row-level security).
"""

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core.backups import manifest

_MODULUS = 2**64
_COLUMNS = sql.SQL(
    "SELECT a.attname::text FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)"
    " AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
    " AND a.attname OPERATOR(pg_catalog.<>) ALL(%s::text[]) ORDER BY a.attnum"
)


def covered_columns(
    conn: psycopg.Connection[Any], schema: str, table: str, exclude: Sequence[str] = ()
) -> list[str]:
    """The columns a table's checksum covers, in column order."""
    qualified = sql.Identifier(schema, table).as_string(conn)
    rows = conn.execute(_COLUMNS, (qualified, list(exclude))).fetchall()
    return [str(row[0]) for row in rows]


def summary_query(schema: str, table: str, columns: Sequence[str]) -> sql.Composed:
    """Rows, and the two sums of 64-bit md5 halves, of one table.

    ``OFFSET 0`` keeps the planner from folding the subquery into the outer one,
    which would compute each row's text and md5 once per half: the same sums,
    at nearly twice the cost (the checksum scan runs beside pg_dump)."""
    row = sql.SQL(", ").join(sql.Identifier("t", column) for column in columns)
    half = "pg_catalog.sum(('x' || pg_catalog.substr(h, {}, 16))::bit(64)::bigint)"
    return sql.SQL(
        "SELECT pg_catalog.count(*), "
        + half.format(1)
        + "::text, "
        + half.format(17)
        + "::text FROM (SELECT pg_catalog.md5(ROW({row})::text) AS h FROM {table} t OFFSET 0) AS x"
    ).format(row=row, table=sql.Identifier(schema, table))


def checksum(first: int, second: int) -> str:
    """The two sums as 32 hex digits (each reduced modulo 2**64)."""
    return f"{first % _MODULUS:016x}{second % _MODULUS:016x}"


def table_summary(
    conn: psycopg.Connection[Any], schema: str, table: str, exclude: Sequence[str] = ()
) -> manifest.TableSummary:
    """One table's rows and checksum as the current snapshot and role see them."""
    columns = covered_columns(conn, schema, table, exclude)
    found = conn.execute(summary_query(schema, table, columns)).fetchone()
    assert found is not None
    rows, first, second = found
    return manifest.TableSummary(
        name=table, rows=int(rows), checksum=checksum(int(first or 0), int(second or 0))
    )


def summarise(
    conn: psycopg.Connection[Any], schema: str, tables: Sequence[str], exclude: Sequence[str] = ()
) -> list[manifest.TableSummary]:
    """``table_summary`` of each table, in the order given."""
    return [table_summary(conn, schema, table, exclude) for table in tables]
