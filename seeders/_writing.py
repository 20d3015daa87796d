"""Idempotent writes shared by the sample seeders: upserts and look-ups on natural keys.

An upsert inserts missing rows and updates existing ones only where a
value differs, so a second run writes nothing at all.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from tenantdb.core import seeding


def upsert(
    ctx: seeding.Context, table: sa.Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]
) -> None:
    """Insert ``rows``; where ``key`` already exists, bring the other columns up to date."""
    if not rows:
        return
    statement = insert(table).values(list(rows))
    columns = [c for c in rows[0] if c not in key]
    changed = sa.or_(*(table.c[c].is_distinct_from(statement.excluded[c]) for c in columns))
    ctx.connection.execute(
        statement.on_conflict_do_update(
            index_elements=ctx.natural_key(*key),
            set_={c: statement.excluded[c] for c in columns},
            where=changed,
        )
    )


def ids(ctx: seeding.Context, table: sa.Table, key: str, values: Iterable[str]) -> dict[str, int]:
    """Surrogate ids of rows by natural key (only the rows that exist)."""
    wanted = list(values)
    query = sa.select(table.c[key], table.c.id).where(table.c[key].in_(wanted))
    return {row[0]: row[1] for row in ctx.connection.execute(query)}


def delete(ctx: seeding.Context, table: sa.Table, key: str, values: Iterable[str]) -> None:
    """Remove rows by natural key."""
    ctx.connection.execute(sa.delete(table).where(table.c[key].in_(list(values))))
