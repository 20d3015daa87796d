"""Connections for a seeding run, and each seeder's transaction inside the tenant.

Owns: the run's own psycopg connection to the tenant's database (the
operator's database, or the tenant's own for ``database`` isolation) with
a SQLAlchemy engine over it; entering the tenant with ``scoping.enter``
as its login role; leaving it again before the history is written; and
counting the rows a transaction wrote from PostgreSQL's own per-transaction
statistics, whatever way (SQL, COPY, a ``.sql`` file) they were written.
"""

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy
from psycopg import sql
from sqlalchemy import pool as sa_pool

from tenantdb.core import scoping

APPLICATION_NAME = "tenantdb-seeding"


@dataclass
class Session:
    """The run's connection to where the tenant's tables are."""

    raw: psycopg.Connection[Any]
    engine: sqlalchemy.Engine
    location: scoping.TenantLocation
    shared_schema: str
    same_database: bool
    """True when the control schema is reachable on this connection (not ``database``)."""

    @property
    def data_schema(self) -> str:
        """The schema whose tables the tenant's seeders write."""
        return self.location.search_path(self.shared_schema)


@contextmanager
def open_session(
    operator_url: str, location: scoping.TenantLocation, shared_schema: str
) -> Iterator[Session]:
    """A dedicated connection (not autocommit) with SQLAlchemy over it, closed at the end."""
    same = location.isolation != "database"
    url = operator_url if same else scoping.database_url(operator_url, location)
    raw = psycopg.connect(url, autocommit=False, application_name=APPLICATION_NAME)
    try:
        engine = sqlalchemy.create_engine(
            "postgresql+psycopg://",
            creator=lambda: raw,
            poolclass=sa_pool.StaticPool,
            pool_reset_on_return=None,
        )
        # The dialect inspects the server on first connect, then rolls back:
        # do it now, before any transaction of ours is open.
        with engine.connect():
            pass
        try:
            yield Session(raw, engine, location, shared_schema, same)
        finally:
            engine.dispose()
    finally:
        raw.close()


@contextmanager
def tenant_transaction(session: Session) -> Iterator[sqlalchemy.Connection]:
    """One transaction acting as the tenant's login role.

    The caller commits with ``connection.commit()``; the transaction is
    rolled back when the body raises, or when it ends without a commit.
    """
    with session.engine.connect() as connection:
        connection.begin()
        try:
            scoping.enter(session.raw, session.location, "login", session.shared_schema)
            yield connection
        except BaseException:
            # A broken connection cannot roll back; the original error matters more.
            with suppress(psycopg.Error, sqlalchemy.exc.SQLAlchemyError):
                connection.rollback()
            raise


def leave_tenant(session: Session) -> None:
    """Act as the operator again for the rest of the transaction (history, counts).

    Refuses to go on if the seeder ended the transaction itself: its rows
    would then be committed without a history row.
    """
    row = session.raw.execute(sql.SQL("SELECT current_user")).fetchone()
    if row is None or row[0] != session.location.login_role:
        raise RuntimeError(
            "the seeder ended its transaction (commit or rollback); seeders must never do that"
        )
    session.raw.execute(sql.SQL("RESET ROLE"))


def rows_touched(session: Session) -> int:
    """Rows inserted, updated or deleted in the tenant's tables, as the backend counts them.

    PostgreSQL's per-transaction counters also hold earlier transactions'
    counts until the backend next flushes its statistics (only ever between
    transactions), so callers take this before and after and subtract.
    """
    row = session.raw.execute(
        sql.SQL(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint"
            " FROM pg_catalog.pg_stat_xact_user_tables WHERE schemaname = %s"
        ),
        (session.data_schema,),
    ).fetchone()
    return int(row[0]) if row else 0
