"""What a seeder receives: a connection already narrowed to one tenant, and helpers.

Owns the ``Context`` handed to every seeder. Its ``connection`` is a
SQLAlchemy ``Connection`` over the run's psycopg connection, inside a
transaction where ``SET LOCAL ROLE`` made the session the tenant's own
login role and ``SET LOCAL search_path`` points at the tenant's tables:
privileges and row-level security apply exactly as they do to the
application, so a seeder cannot write into another tenant. Seeders never
commit; the runner does, together with the seed history.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import sqlalchemy
from psycopg import sql

OptionValue = TypeVar("OptionValue", int, float, str)

STAGING_TABLE = "tenantdb_seed_staging"
"""Temporary table ``bulk_insert`` copies into when it must skip existing rows."""


@dataclass(frozen=True)
class Tenant:
    """The tenant a seeder writes to, for seeders whose data depends on it."""

    uid: str
    name: str
    namespace: str
    isolation: str
    """``schema``, ``shared`` or ``database``."""


class Context:
    """One seeder's view of one tenant, valid for one transaction."""

    def __init__(
        self,
        connection: sqlalchemy.Connection,
        raw: psycopg.Connection[Any],
        tenant: Tenant,
        profile: str,
        report: Callable[[int, int], None],
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.connection = connection
        """SQLAlchemy Core connection scoped to the tenant; execute ``insert()`` & co. on it."""
        self.tenant = tenant
        """Which tenant this is (uid, name, namespace, isolation)."""
        self.profile = profile
        """The profile of the run: ``production`` or ``development``."""
        self._raw = raw
        self._report = report
        self._options = dict(options or {})

    def natural_key(self, *columns: str) -> list[str]:
        """Conflict target for an upsert on ``columns``.

        Shared tables are unique per tenant, so their keys start with
        ``tenant_id``; pass the result as ``index_elements`` of
        ``on_conflict_do_update``.
        """
        return ["tenant_id", *columns] if self.tenant.isolation == "shared" else list(columns)

    def bulk_insert(
        self,
        table: sqlalchemy.Table,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        skip_existing: bool = False,
    ) -> None:
        """Insert many rows with COPY, the fastest path PostgreSQL has.

        ``skip_existing`` copies into a temporary table first and inserts
        from it with ``ON CONFLICT DO NOTHING``, so rows already present
        (by any unique key) are left alone. Shared tables always take that
        path: PostgreSQL refuses COPY FROM into tables under row-level
        security.
        """
        target = _qualified(table)
        if not skip_existing and self.tenant.isolation != "shared":
            copy_rows(self._raw, target, columns, rows)
            return
        names = _names(columns)
        staging = sql.Identifier(STAGING_TABLE)
        self._raw.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
            ).format(staging, names, target)
        )
        copy_rows(self._raw, staging, columns, rows)
        self._raw.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                target, names, names, staging
            )
        )
        self._raw.execute(sql.SQL("DROP TABLE {}").format(staging))

    def execute_script(self, statements: str) -> None:
        """Run several SQL statements as they are (``.sql`` seeders); no parameters."""
        self._raw.execute(statements.encode())

    def option(self, name: str, default: OptionValue) -> OptionValue:
        """A run-time option given to this seeder (``--option seeder.name=value``),
        converted to the type of ``default``, or ``default`` when not given."""
        raw = self._options.get(name)
        if raw is None:
            return default
        try:
            return type(default)(raw)
        except ValueError:
            raise ValueError(
                f"option {name}={raw!r} is not a valid {type(default).__name__}"
            ) from None

    def progress(self, done: int, expected: int) -> None:
        """Say how far the seeder is (in any unit), for progress bars and status."""
        self._report(done, expected)


def _qualified(table: sqlalchemy.Table) -> sql.Identifier:
    return sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)


def _names(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def copy_rows(
    raw: psycopg.Connection[Any],
    target: sql.Identifier,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """Send ``rows`` (values in ``columns`` order) into the table ``target`` with one COPY."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, _names(columns))
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
