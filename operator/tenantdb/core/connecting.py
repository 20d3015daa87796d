"""Connection pools and the translation of driver errors into ours.

Pools run in autocommit mode: every unit of work opens its own explicit
``conn.transaction()``, so what is atomic is visible in the code, and
statements that refuse transactions (CREATE DATABASE) can run too.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import conninfo

from tenantdb.core import errors

Pool = psycopg_pool.ConnectionPool
"""The pool type callers outside ``core`` hold without importing the driver."""

UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")
"""Connection exceptions and operator intervention (server shutting down)."""
TRANSIENT_SQLSTATES = ("40", "55P03", "XX000")
"""Serialization failures and deadlocks, lock timeouts, and concurrent catalog
updates ("tuple concurrently updated"): retrying may well succeed."""


def open_pool(
    url: str, min_size: int = 1, max_size: int = 8, name: str = "tenantdb"
) -> psycopg_pool.ConnectionPool:
    """A pool of autocommit connections to one server; opened lazily, checked on use."""
    pool = psycopg_pool.ConnectionPool(
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


def public_parameters(url: str, host_override: str | None = None) -> dict[str, str]:
    """Host, port and database name of a URL, without its credentials."""
    params = conninfo.conninfo_to_dict(url)
    return {
        "host": host_override or str(params.get("host") or "127.0.0.1"),
        "port": str(params.get("port") or "5432"),
        "dbname": str(params.get("dbname") or "postgres"),
    }
