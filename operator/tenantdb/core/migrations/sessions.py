"""Connection-level pieces of a migration run: the tenant's session, its transaction, its scope.

The user's SQL runs on a session whose session user is the tenant's owner
role (``scoping.session_login``, connections from ``pools.TenantSessions``),
never on the operator's: whatever the SQL does to its session (``SET
ROLE``, ``set_config``, ``SET SESSION AUTHORIZATION``), it has no more
rights than the owner. ``open_scope`` sends BEGIN, the script's timeouts
and the tenant's ``search_path`` in one round trip, and ``scope_prefix``
the same statements (bound client-side) to send in the user's SQL's own
message; ``Transaction`` ends a transaction a batch began; ``describe``
turns a server error into the message users see, with its line and column;
``execute`` is the one place the user's SQL is sent, as given.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq, sql

from tenantdb.core import connecting, scoping
from tenantdb.core.migrations import outcomes, scripts

Connection = psycopg.Connection[Any]

OPEN_SCOPE = (
    "BEGIN;\n"
    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true),"
    " set_config('search_path', quote_ident(%s), true)"
)
"""A transaction with the script's timeouts and the tenant's search_path (parameters:
lock_timeout, statement_timeout, schema)."""
SESSION_SCOPE = (
    "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false),"
    " set_config('search_path', quote_ident(%s), false)"
)
"""The same settings for a whole session (``transactional: false``: no transaction open)."""


@contextmanager
def tenant_session(ctx: outcomes.Context, target: scoping.TenantLocation) -> Iterator[Connection]:
    """A session as the target's owner role, in the database holding its data."""
    role, database = scoping.session_login(target)
    with connecting.translated_errors(), ctx.server.sessions.session(role, database) as work:
        yield work


def unavailable(exc: psycopg.Error) -> bool:
    """A lost or refused connection, not an error of the statement."""
    sqlstate = exc.sqlstate or ""
    if isinstance(exc, psycopg.errors.QueryCanceled) or connecting.is_transient(sqlstate):
        return False  # a statement timeout (57014) is the statement's own error
    return not sqlstate or sqlstate.startswith(connecting.UNAVAILABLE_SQLSTATE_CLASSES)


def scope_params(
    ctx: outcomes.Context, target: scoping.TenantLocation, script: scripts.Script
) -> tuple[str, str, str]:
    """The parameters of ``OPEN_SCOPE`` and ``SESSION_SCOPE``."""
    return (
        script.lock_timeout,
        script.statement_timeout,
        target.search_path(ctx.server.shared_schema),
    )


def open_scope(
    work: Connection,
    ctx: outcomes.Context,
    target: scoping.TenantLocation,
    script: scripts.Script,
) -> "Transaction":
    """BEGIN with the script's timeouts and the tenant's search_path, in one round trip."""
    batch(work, OPEN_SCOPE.encode(), scope_params(ctx, target, script))
    return Transaction(work)


def scope_prefix(
    work: Connection,
    ctx: outcomes.Context,
    target: scoping.TenantLocation,
    script: scripts.Script,
) -> str:
    """``OPEN_SCOPE`` with its parameters bound client-side, ending in a statement
    separator: what ``execute`` sends before the user's SQL in the same message."""
    bound = psycopg.ClientCursor(work).mogrify(OPEN_SCOPE, scope_params(ctx, target, script))
    return bound + ";\n"


def batch(conn: Connection, query: bytes | sql.Composed, params: Any) -> psycopg.ClientCursor[Any]:
    """Send several statements in one simple-protocol message, parameters bound
    client-side: one round trip and one ``execute``. Positioned on the first
    statement's result."""
    cursor = psycopg.ClientCursor(conn)
    cursor.execute(query, params)
    return cursor


class Transaction:
    """The end of a transaction whose BEGIN went in a ``batch`` with other statements."""

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

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.end(commit=kind is None)


def describe(exc: psycopg.Error, text: str, first_line: int = 1, offset: int = 0) -> str:
    """The database's message, with the error's line and column in the script.

    ``offset``: characters sent before ``text`` in the same message (our own
    statements): the server's position counts them, the message does not (an
    error among them has no place in the script)."""
    message = connecting.describe(exc)
    position = exc.diag.statement_position
    if not position or not position.isdigit():
        return message
    at = int(position) - offset
    if offset and at >= 1:
        message = message.replace(f", at character {position}", f", at character {at}", 1)
    if at < 1 or at > len(text) + 1:
        return message
    before = text[: at - 1]
    line = first_line + before.count("\n")
    column = len(before) - (before.rfind("\n") + 1) + 1
    return f"{message} (line {line}, column {column})"


COMMIT_AFTER = "\n;\nCOMMIT"
"""A suffix for ``execute``: the transaction ends in the user's SQL's own message. It holds
no quote, dollar sign or comment mark, so no construct the user's SQL leaves open can
end inside it and make it mean something else: an unterminated string or comment
stays unterminated, and the whole message fails to parse before anything runs."""


def execute(conn: Connection, text: str, prefix: str = "", suffix: str = "") -> None:
    """The one place user-written SQL is sent: as given, on a tenant's own session.

    ``prefix``: our own statements (``scope_prefix``), sent first in the same
    simple-protocol message, so they and the user's SQL take one round trip;
    ``suffix``: nothing but ``COMMIT_AFTER``. After an error the server skips
    the rest of the message, so the suffix only runs if all of the user's SQL did."""
    assert suffix in ("", COMMIT_AFTER)
    conn.execute((prefix + text + suffix).encode())
