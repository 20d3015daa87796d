"""The locks that serialise the operator's work, kept where no tenant can reach them.

Advisory locks are database-wide: every session connected to a database,
a tenant's too, may take any key, and ``pg_locks`` shows which keys the
operator uses. So the operator locks rows of its own table
(``<control schema>.locks``, registry step 4), on which tenants have no
privilege at all: a tenant can neither take these locks nor hold the
operator up by holding them.

A lock is held by an open transaction on an operator connection and ends
with it. ``hold`` waits at most the operator pool's ``lock_timeout``
(``DatabaseSettings.lock_wait``) and then raises ``TenantBusy``;
``attempt`` and ``attempt_reading`` never wait. ``attempt_reading`` sends
BEGIN, the lock and a first read in one round trip, and ``commit_with``
the last write and COMMIT in another: the whole of a lock's life on the
common path of a migration is two round trips, and of a tenant's provisioning
too (``hold_reading``, the waiting kind).
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import pq, sql

from tenantdb.core import connecting, errors, naming

TABLE = "locks"
BOOTSTRAP = "bootstrap"
"""Key serialising the control and shared schemas' set-up and catalog-row updates."""


def table_step(schema: naming.Identifier) -> sql.Composed:
    """Registry step 4: one row per lock key, created on first use."""
    return sql.SQL(
        "CREATE TABLE {} (key text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(schema, TABLE))


def _claim(schema: naming.Identifier) -> sql.Composed:
    return sql.SQL("INSERT INTO {} (key) VALUES (%s) ON CONFLICT (key) DO NOTHING").format(
        sql.Identifier(schema, TABLE)
    )


def _select(schema: naming.Identifier, skip_locked: bool) -> sql.Composed:
    mode = sql.SQL(" SKIP LOCKED" if skip_locked else "")
    return sql.SQL("SELECT key FROM {} WHERE key = %s FOR UPDATE{}").format(
        sql.Identifier(schema, TABLE), mode
    )


def take(conn: psycopg.Connection[Any], schema: naming.Identifier, key: str) -> None:
    """Lock ``key`` for the caller's open transaction, waiting at most ``lock_timeout``."""
    try:
        conn.execute(_claim(schema), (key,))
        conn.execute(_select(schema, skip_locked=False), (key,))
    except psycopg.errors.LockNotAvailable as exc:
        raise errors.TenantBusy(
            f"another operation holds the lock of {key} (waited the operator's lock_wait)"
        ) from exc


def take_statement(schema: naming.Identifier, key: str) -> sql.Composed:
    """``take`` as statements that can join a batch (a timeout fails the batch with 55P03)."""
    table, value = sql.Identifier(schema, TABLE), sql.Literal(key)
    return sql.SQL(
        "INSERT INTO {table} (key) VALUES ({key}) ON CONFLICT (key) DO NOTHING;\n"
        "SELECT key FROM {table} WHERE key = {key} FOR UPDATE"
    ).format(table=table, key=value)


def take_now(conn: psycopg.Connection[Any], schema: naming.Identifier, key: str) -> bool:
    """Lock ``key`` for the caller's open transaction if nobody holds it; never waits."""
    conn.execute(_claim(schema), (key,))
    return conn.execute(_select(schema, skip_locked=True), (key,)).fetchone() is not None


def release_snapshot(conn: psycopg.Connection[Any]) -> None:
    """Let the lock's transaction idle without a snapshot.

    The unnamed portal of the last extended-protocol statement keeps its
    snapshot (``backend_xmin``) until the next simple query; while it does,
    ``CREATE INDEX CONCURRENTLY`` on any other session of the database
    waits for this transaction. One empty simple query drops it.
    """
    psycopg.ClientCursor(conn).execute("SELECT")


@contextmanager
def hold(
    pool: psycopg_pool.ConnectionPool, schema: naming.Identifier, key: str
) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose transaction holds ``key`` (waiting at most ``lock_timeout``)."""
    with connecting.connection(pool) as conn, conn.transaction():
        take(conn, schema, key)
        yield conn


@contextmanager
def attempt(
    pool: psycopg_pool.ConnectionPool, schema: naming.Identifier, key: str
) -> Iterator[psycopg.Connection[Any] | None]:
    """A connection whose transaction holds ``key``, or None when someone else holds it.

    Work written on the connection commits with the lock's release, when
    the block ends without an exception.
    """
    with connecting.connection(pool) as conn, conn.transaction():
        yield conn if take_now(conn, schema, key) else None


Held = tuple[psycopg.Connection[Any], tuple[Any, ...] | None]
"""A connection whose transaction holds a lock, and the first row of a read made with it."""


@contextmanager
def attempt_reading(
    pool: psycopg_pool.ConnectionPool,
    schema: naming.Identifier,
    key: str,
    read: sql.Composable,
    params: Sequence[Any],
) -> Iterator[Held | None]:
    """``attempt`` and ``read`` in one round trip: BEGIN, the claim, the try-lock and
    ``read`` go in one simple-protocol message, parameters bound client-side
    (``params`` are ``read``'s). Yields the connection and ``read``'s first row
    with the lock held, or None when someone else holds it (the read is then
    dropped unseen).

    Work written on the connection commits with the lock's release when the
    block ends without an exception (``commit_with`` commits earlier, with a
    last write); an exception rolls it back.
    """
    query = sql.SQL(";\n").join(
        [sql.SQL("BEGIN"), _claim(schema), _select(schema, skip_locked=True), read]
    )
    with connecting.connection(pool) as conn:
        try:
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(query, (key, key, *params))
            cursor.nextset()  # the claim
            cursor.nextset()  # the try-lock
            locked = cursor.fetchone() is not None
            cursor.nextset()
            row = cursor.fetchone()
            yield (conn, row) if locked else None
        except BaseException:
            _end(conn, commit=False)
            raise
        _end(conn, commit=True)


@contextmanager
def hold_reading(
    conn: psycopg.Connection[Any],
    schema: naming.Identifier,
    key: str,
    statements: Sequence[sql.Composable],
    params: Mapping[str, Any],
) -> Iterator[tuple[Any, ...] | None]:
    """``hold`` on ``conn`` and ``statements`` in one round trip: BEGIN, the claim, the
    lock (waiting at most ``lock_timeout``, then ``TenantBusy``) and ``statements`` go
    in one simple-protocol message, parameters bound client-side (``params`` are the
    statements'). Yields the first row of the last statement, with the lock held.

    Work written on the connection commits with the lock's release when the block
    ends without an exception (``commit_with`` commits earlier, with a last write);
    an exception, one of ``statements``' own included, rolls it back.
    """
    query = sql.SQL(";\n").join([sql.SQL("BEGIN"), take_statement(schema, key), *statements])
    try:
        cursor = psycopg.ClientCursor(conn)
        try:
            cursor.execute(query, params)
        except psycopg.errors.LockNotAvailable as exc:
            raise errors.TenantBusy(
                f"another operation holds the lock of {key} (waited the operator's lock_wait)"
            ) from exc
        while cursor.nextset():
            pass
        yield cursor.fetchone() if cursor.description else None
    except BaseException:
        _end(conn, commit=False)
        raise
    _end(conn, commit=True)


def commit_with(
    conn: psycopg.Connection[Any],
    statement: sql.Composable,
    params: Sequence[Any] | Mapping[str, Any] | None,
) -> None:
    """``statement`` and COMMIT in one round trip, ending the transaction that holds the
    lock (parameters bound client-side; None: the statement is sent as it is). If
    ``statement`` fails, nothing is committed and the transaction is left aborted, for
    the lock's block to roll back."""
    query = sql.SQL(";\n").join([statement, sql.SQL("COMMIT")])
    psycopg.ClientCursor(conn).execute(query, params)


def _end(conn: psycopg.Connection[Any], commit: bool) -> None:
    """COMMIT (ROLLBACK after an error, or if asked) unless no transaction is open."""
    if conn.broken:
        return
    status = conn.info.transaction_status
    if status == pq.TransactionStatus.IDLE:
        return
    ok = commit and status != pq.TransactionStatus.INERROR
    conn.execute("COMMIT" if ok else "ROLLBACK")
