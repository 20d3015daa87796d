"""The order foreign keys impose on the tables of one schema.

Loading rows needs every referenced table before the tables referencing it
(a backup's export, a restore); deleting them needs the reverse (a shared
tenant's rows when it is dropped).
"""

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import errors


class ForeignKeyCycle(errors.TenantDBError):
    """The tables' foreign keys form a cycle: no order loads them one by one."""

    reason = "ForeignKeyCycle"


_REFERENCES = sql.SQL(
    "SELECT c.relname::text, r.relname::text FROM pg_catalog.pg_constraint k"
    " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) k.conrelid"
    " JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) k.confrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
    " WHERE k.contype OPERATOR(pg_catalog.=) 'f' AND n.nspname OPERATOR(pg_catalog.=) %s"
    " AND r.relnamespace OPERATOR(pg_catalog.=) c.relnamespace"
)


def foreign_key_order(
    conn: psycopg.Connection[Any], schema: str, names: Sequence[str]
) -> list[str]:
    """``names`` with every referenced table before the tables referencing it; a cycle
    (which no load order satisfies) is refused."""
    parents: dict[str, set[str]] = {name: set() for name in names}
    for child, parent in conn.execute(_REFERENCES, (schema,)).fetchall():
        if child in parents and parent in parents and child != parent:
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = sorted(name for name, needs in parents.items() if not needs - set(ordered))
        if not ready:
            raise ForeignKeyCycle(
                f"the foreign keys of {', '.join(sorted(parents))} form a cycle: no load order"
            )
        ordered += ready
        for name in ready:
            del parents[name]
    return ordered
