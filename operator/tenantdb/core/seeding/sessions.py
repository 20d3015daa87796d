"""Connections for a seeding run, and each seeder's transaction inside the tenant.

Owns: the run's session as the tenant's owner role (``pools.TenantSessions``:
seeders never run on an operator connection), in the database holding the
tenant's tables, with a SQLAlchemy engine over it; entering the tenant with
``scoping.enter`` as its login role; leaving it again to count rows; and
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

from tenantdb.core import connecting, pools, scoping


@dataclass
class Session:
    """The run's connection to where the tenant's tables are."""

    raw: psycopg.Connection[Any]
    engine: sqlalchemy.Engine
    location: scoping.TenantLocation
    shared_schema: str

    @property
    def data_schema(self) -> str:
        """The schema whose tables the tenant's seeders write."""
        return self.location.search_path(self.shared_schema)


@contextmanager
def open_session(
    tenant_sessions: pools.TenantSessions, location: scoping.TenantLocation, shared_schema: str
) -> Iterator[Session]:
    """A session as the tenant's owner (not autocommit) with SQLAlchemy over it."""
    role, database = scoping.session_login(location)
    with connecting.translated_errors(), tenant_sessions.session(role, database) as raw:
        raw.autocommit = False
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
            yield Session(raw, engine, location, shared_schema)
        finally:
            engine.dispose(close=False)


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
    """Act as the session user (the owner) again for the rest of the transaction (counts).

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
