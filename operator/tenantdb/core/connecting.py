"""Connection pools and the translation of driver errors into ours.

Pools run in autocommit mode: every unit of work opens its own explicit
``conn.transaction()``, so what is atomic is visible in the code, and
statements that refuse transactions (CREATE DATABASE) can run too.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import conninfo

from tenantdb.core import errors

Pool = psycopg_pool.ConnectionPool
"""The pool type callers outside ``core`` hold without importing the driver."""
Connection = psycopg.Connection[Any]
"""Likewise, a connection."""

UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")
"""Connection exceptions and operator intervention (server shutting down)."""
TRANSIENT_SQLSTATES = ("40", "55P03", "XX000")
"""Serialization failures and deadlocks, lock timeouts, and concurrent catalog
updates ("tuple concurrently updated"): retrying may well succeed."""


DOWN_SECONDS = 5.0
"""Seconds a pool that could not connect fails at once before one caller tries again."""


class GuardedPool(psycopg_pool.ConnectionPool):
    """A pool that fails at once while its server is known to be down.

    Waiting for a connection ends after the pool's timeout (30 s). With the
    server down every caller would wait that long, each holding one of the
    operator's worker threads, and a server that is down would hold up the
    work of every other. So when a wait ends without a connection and the
    pool's connection attempts failed meanwhile (it is failing to connect, not
    busy), callers fail at once with the cause for ``DOWN_SECONDS``; then one
    caller at a time tries again, and the first connection obtained ends it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        self._down_until = 0.0
        self._down_because = ""
        self._probing = False
        self._errors_seen = 0

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        self._refuse_while_down()
        try:
            conn = super().getconn(timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._failed(exc)
            raise
        finally:
            with self._guard:
                self._probing = False
        errors_now = self._connection_errors()
        with self._guard:
            self._down_until, self._down_because = 0.0, ""
            self._errors_seen = errors_now
        return conn

    def _refuse_while_down(self) -> None:
        with self._guard:
            if not self._down_until:
                return
            if time.monotonic() >= self._down_until and not self._probing:
                self._probing = True  # this caller tries; the others keep failing at once
                return
            because = self._down_because
        raise psycopg_pool.PoolTimeout(f"the server was unreachable moments ago: {because}")

    def _failed(self, exc: psycopg_pool.PoolTimeout) -> None:
        errors_now = self._connection_errors()
        with self._guard:
            if errors_now <= self._errors_seen:
                return  # no connection attempt failed meanwhile: busy, not down
            self._errors_seen = errors_now
            self._down_until = time.monotonic() + DOWN_SECONDS
            self._down_because = str(exc)

    def _connection_errors(self) -> int:
        """Failed connection attempts since the pool opened (psycopg_pool's counter)."""
        return int(self.get_stats().get("connections_errors", 0))


def open_pool(
    url: str, min_size: int = 1, max_size: int = 8, name: str = "tenantdb"
) -> psycopg_pool.ConnectionPool:
    """A pool of autocommit connections to one server; opened lazily, checked on use,
    failing at once while the server is known to be down (``GuardedPool``)."""
    pool = GuardedPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        kwargs={"autocommit": True, "application_name": name},
        check=psycopg_pool.ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=False)
    return pool


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn psycopg errors into the ``errors`` family, keeping the cause."""
    try:
        yield
    except psycopg_pool.PoolTimeout as exc:
        raise errors.DatabaseUnavailable(f"no database connection available: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise errors.DatabaseUnavailable(f"database unavailable: {exc}") from exc
    except psycopg.Error as exc:
        sqlstate = exc.sqlstate or ""
        if sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES):
            raise errors.DatabaseUnavailable(f"database unavailable: {exc}") from exc
        failure = errors.DatabaseError(describe(exc), sqlstate=exc.sqlstate)
        failure.permanent = not is_transient(sqlstate)
        raise failure from exc


def is_transient(sqlstate: str | None) -> bool:
    """An error that retrying may well get past (``TRANSIENT_SQLSTATES``)."""
    return bool(sqlstate) and str(sqlstate).startswith(TRANSIENT_SQLSTATES)


def describe(exc: psycopg.Error) -> str:
    """The server's message with its SQLSTATE and position, for status and events."""
    diag = exc.diag
    text = diag.message_primary or str(exc).strip()
    parts = [f"{text} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else text]
    if diag.statement_position:
        parts.append(f"at character {diag.statement_position}")
    if diag.message_detail:
        parts.append(f"detail: {diag.message_detail}")
    return ", ".join(parts)


@contextmanager
def connection(pool: psycopg_pool.ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection, with driver errors translated."""
    with translated_errors(), pool.connection() as conn:
        yield conn


def reach(url: str, timeout: int) -> None:
    """Open and close one connection to the server, so that a start-up fails within
    ``timeout`` seconds with the driver's own words (refused, unknown host, password)."""
    with translated_errors(), psycopg.connect(url, connect_timeout=timeout) as conn:
        conn.execute("SELECT 1")


def ping(pool: psycopg_pool.ConnectionPool, timeout: float) -> None:
    """One round trip to the server within ``timeout`` seconds (``DatabaseUnavailable`` if not)."""
    with translated_errors(), pool.connection(timeout=timeout) as conn:
        conn.execute("SELECT 1")


def valid_url(url: str) -> bool:
    """Whether libpq can read ``url``; its own error is not kept, as it quotes the string,
    password and all, and a URL from a Secret must reach no status, event or log."""
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return False
    return True


def public_parameters(url: str, host_override: str | None = None) -> dict[str, str]:
    """Host, port and database name of a URL, without its credentials."""
    params = conninfo.conninfo_to_dict(url)
    return {
        "host": host_override or str(params.get("host") or "127.0.0.1"),
        "port": str(params.get("port") or "5432"),
        "dbname": str(params.get("dbname") or "postgres"),
    }
