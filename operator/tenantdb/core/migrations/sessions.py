"""Connection-level pieces of a migration run: where it runs, its transaction, its scope.

``work_connection`` picks the operator's connection or a ``database``
tenant's own; ``batch`` sends several statements in one round trip and
``Transaction`` ends a transaction a batch began; ``enter`` sets the script's
timeouts and enters the tenant's scope (``scoping.enter``); ``describe``
turns a server error into the message users see, with its line and
column; ``execute`` is the one place the user's SQL is sent, as given.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from tenantdb.core import connecting, errors, scoping
from tenantdb.core.migrations import outcomes, scripts

Connection = psycopg.Connection[Any]


@contextmanager
def work_connection(
    ctx: outcomes.Context, conn: Connection, target: scoping.TenantLocation
) -> Iterator[Connection]:
    """The operator's connection, or one to a ``database`` tenant's own database."""
    if target.isolation != "database":
        yield conn
        return
    url = scoping.database_url(ctx.server.url, target)
    try:
        work = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise errors.DatabaseUnavailable(
            f"cannot connect to database {target.database_name}: {connecting.describe(exc)}"
        ) from exc
    with work:
        yield work


def unavailable(exc: psycopg.Error) -> bool:
    """A lost or refused connection, not an error of the statement."""
    sqlstate = exc.sqlstate or ""
    if isinstance(exc, psycopg.errors.QueryCanceled) or connecting.is_transient(sqlstate):
        return False  # a statement timeout (57014) is the statement's own error
    return not sqlstate or sqlstate.startswith(connecting.UNAVAILABLE_SQLSTATE_CLASSES)


def enter(
    conn: Connection,
    ctx: outcomes.Context,
    target: scoping.TenantLocation,
    script: scripts.Script,
) -> None:
    """The script's timeouts and the tenant's scope, for the current transaction."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
        timeouts(script),
    )
    scoping.enter(conn, target, "owner", ctx.server.shared_schema)


ENTER_SCOPE = (
    "SELECT set_config('role', %s, true), set_config('search_path', quote_ident(%s), true)"
)
"""``scoping.enter`` as one statement that can share a batch (parameters: ``scope``)."""


def scope(target: scoping.TenantLocation, shared_schema: str) -> tuple[str, str]:
    """The role and search_path ``scoping.enter`` sets when acting as the owner.

    ``set_config('role', ..., true)`` is ``SET LOCAL ROLE`` (the same
    membership check), so ``ENTER_SCOPE`` with these narrows the
    transaction exactly as ``scoping.enter`` does, in a statement that
    takes parameters and so can join the engine's first batch.
    """
    return scoping.acting_as(target, "owner", shared_schema)


def batch(conn: Connection, query: bytes, params: Any) -> psycopg.ClientCursor[Any]:
    """Send several statements in one simple-protocol message, parameters bound
    client-side: one round trip and one ``execute``, where a pipeline costs one
    ``execute`` per statement. Positioned on the first statement's result."""
    cursor = psycopg.ClientCursor(conn)
    cursor.execute(query, params)
    return cursor


def timeouts(script: scripts.Script) -> tuple[str, str]:
    """The script's lock_timeout and statement_timeout, as ``set_config`` takes them."""
    return script.lock_timeout, script.statement_timeout


class Transaction:
    """The end of a transaction whose BEGIN (and usually COMMIT) went in a ``batch``
    with other statements (``conn.transaction()`` sends each on its own round trip)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def end(self, commit: bool) -> None:
        """COMMIT (ROLLBACK after an error, or if asked) unless no transaction is open."""
        if self.conn.broken:
            return
        status = self.conn.info.transaction_status
        if status == pq.TransactionStatus.IDLE:
            return
        ok = commit and status != pq.TransactionStatus.INERROR
        self.conn.execute("COMMIT" if ok else "ROLLBACK")


def describe(exc: psycopg.Error, text: str, first_line: int = 1) -> str:
    """The database's message, with the error's line and column in the script."""
    message = connecting.describe(exc)
    position = exc.diag.statement_position
    if not position or not position.isdigit() or int(position) > len(text) + 1:
        return message
    before = text[: int(position) - 1]
    line = first_line + before.count("\n")
    column = len(before) - (before.rfind("\n") + 1) + 1
    return f"{message} (line {line}, column {column})"


def execute(conn: Connection, text: str) -> None:
    """The one place user-written SQL is sent: as given, in the scope already entered."""
    conn.execute(text.encode())
