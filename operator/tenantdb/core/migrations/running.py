"""How one script runs on one tenant once the engine holds the tenant's lock.

Transactional: one transaction with ``SET LOCAL`` timeouts, the tenant's
scope (``scoping.enter``), the user's SQL, then ``RESET ROLE`` and the
ledger row, committed together. ``transactional: false``: statement by
statement with session-level settings and no open transaction, the
ledger's ``statements_done`` advanced after each one, so a retry resumes
after the last statement that completed. ``database`` tenants: the change
commits in the tenant's own database together with a marker row there
(``ledger.MARKER_TABLE``), and the ledger follows; a marker without a
ledger row is a crash between the two commits, recorded on the next run.

``execute`` is the one place the user's SQL is sent, as given.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq, sql

from tenantdb.api import migrations as api
from tenantdb.core import connecting, errors, scoping, shared
from tenantdb.core.migrations import ledger, outcomes, scripts, statements

TRANSIENT = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)
"""Errors worth retrying by themselves: the next attempt may well succeed."""

MAX_TRANSIENT_ATTEMPTS = 5
"""After this many attempts a transient error counts as a failure."""

Connection = psycopg.Connection[Any]

INVALID_INDEX = sql.SQL(
    "SELECT n.nspname, c.relname FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE i.indexrelid = to_regclass(%s) AND NOT i.indisvalid"
)
"""An invalid index by name, resolved through the current search_path (parameter: name)."""


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
    if isinstance(exc, (psycopg.errors.QueryCanceled, *TRANSIENT)):
        return False
    sqlstate = exc.sqlstate or ""
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


def timeouts(script: scripts.Script) -> tuple[str, str]:
    """The script's lock_timeout and statement_timeout, as ``set_config`` takes them."""
    return script.lock_timeout, script.statement_timeout


class Transaction:
    """BEGIN and COMMIT sent by hand, so that they can share a pipeline with other
    statements (``conn.transaction()`` sends each on its own round trip)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def begin(self) -> None:
        """Queue BEGIN (in a pipeline) or send it."""
        self.conn.execute("BEGIN")

    def end(self, commit: bool) -> None:
        """COMMIT (ROLLBACK after an error, or if asked) unless no transaction is open."""
        if self.conn.broken:
            return
        status = self.conn.info.transaction_status
        if status == pq.TransactionStatus.IDLE:
            return
        ok = commit and status != pq.TransactionStatus.INERROR
        self.conn.execute("COMMIT" if ok else "ROLLBACK")


class Run:
    """One script on one tenant, with the lock held and the ledger row read."""

    def __init__(
        self,
        ctx: outcomes.Context,
        conn: Connection,
        work: Connection,
        target: scoping.TenantLocation,
        script: scripts.Script,
        row: ledger.Row,
    ) -> None:
        self.ctx, self.conn, self.work = ctx, conn, work
        self.target, self.script, self.row = target, script, row
        self.schema = ctx.server.control_schema
        self.separate = work is not conn
        """A ``database`` tenant: the change and the ledger commit separately."""

    def marker(self) -> str | None:
        """A ``database`` tenant's own record of this version (its checksum), if any.

        Present while the ledger says otherwise: the change committed in the
        tenant's database and the operator stopped before the ledger write.
        """
        if not self.separate:
            return None
        exists = self.work.execute(ledger.markers_exist(), (self.schema,)).fetchone()
        if not (exists and exists[0]):
            return None
        found = self.work.execute(ledger.select_marker(self.schema), (self.script.version,))
        row = found.fetchone()
        return str(row[0]) if row else None

    def in_place(self, tx: "Transaction", dry_run: bool) -> outcomes.Result:
        """The change inside the caller's transaction, which holds the tenant's lock
        and has already entered the tenant's scope (``enter``)."""
        started = time.monotonic()
        execute(self.work, self.script.up)
        seconds = time.monotonic() - started
        if dry_run:
            return outcomes.Result(self.target, outcomes.Outcome.PASSED, seconds=seconds)
        findings: tuple[str, ...] = ()
        if self.script.scope is api.Scope.SHARED:
            self.work.execute("RESET ROLE")
            self._upsert(ledger.State.APPLIED, seconds, 0, attempt=True)
            findings = tuple(shared.secure_tables(self.work, self.ctx.server.shared_schema))
            tx.end(commit=True)
        else:
            with self.work.pipeline():
                self.work.execute("RESET ROLE")
                self._upsert(ledger.State.APPLIED, seconds, 0, attempt=True)
                tx.end(commit=True)
        return outcomes.Result(
            self.target, outcomes.Outcome.APPLIED, seconds=seconds, findings=findings
        )

    def failed_in_place(
        self, exc: psycopg.Error, dry_run: bool, key: tuple[int, str]
    ) -> outcomes.Result:
        """Record what ``in_place`` raised, if the tenant's lock is still ours to take."""
        if unavailable(exc):
            raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
        message = describe(exc, self.script.up)
        if dry_run:
            return outcomes.Result(self.target, outcomes.Outcome.FAILED, message)
        transient = isinstance(exc, TRANSIENT) and self.row.attempts + 1 < MAX_TRANSIENT_ATTEMPTS
        state = ledger.State.RETRY if transient else ledger.State.FAILED
        with self.conn.transaction():
            locked = self.conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", key
            ).fetchone()
            if locked and locked[0]:
                record = self._record(state, None, 0, attempt=True, error=message)
                self.conn.execute(ledger.upsert_failure(self.schema), record)
        outcome = outcomes.Outcome.RETRY if transient else outcomes.Outcome.FAILED
        return outcomes.Result(self.target, outcome, message)

    def in_transaction(self) -> outcomes.Result:
        started = time.monotonic()
        try:
            with self.work.transaction():
                self._enter()
                execute(self.work, self.script.up)
                seconds = time.monotonic() - started
                findings = self._after_change(up=True)
                if not self.separate:
                    self._upsert(ledger.State.APPLIED, seconds, 0, attempt=True)
        except psycopg.Error as exc:
            return self._failed(exc, self.script.up, attempt=True, statements_done=0)
        if self.separate:
            return self.record_applied(seconds, 0, attempt=True)
        return outcomes.Result(
            self.target, outcomes.Outcome.APPLIED, seconds=seconds, findings=findings
        )

    def stepwise(self) -> outcomes.Result:
        parts = statements.split(self.script.up)
        with self.conn.transaction():
            record = self._record(ledger.State.RUNNING, None, 0, attempt=True)
            row = self.conn.execute(ledger.begin_stepwise(self.schema), record).fetchone()
        done = int(row[0]) if row else 0
        role, path = self._scope_settings()
        started = time.monotonic()
        for index in range(done, len(parts)):
            failure: psycopg.Error | None = None
            try:
                self._enter_session(role, path)
                self._clear_invalid_index(parts[index])
                execute(self.work, parts[index].text)
            except psycopg.Error as exc:
                failure = exc
            finally:
                self._leave_session()
            if failure is not None:
                part = parts[index]
                return self._failed(
                    failure, part.text, attempt=False, statements_done=index, part=(index, part)
                )
            self.conn.execute(
                ledger.record_step(self.schema), (index + 1, self.target.uid, self.script.version)
            )
        seconds = time.monotonic() - started
        with self.work.transaction():
            findings = self._after_change(up=True)
        result = self.record_applied(seconds, len(parts), attempt=False)
        return outcomes.Result(self.target, result.outcome, seconds=seconds, findings=findings)

    def dry_run(self) -> outcomes.Result:
        started = time.monotonic()
        try:
            with self.work.transaction(force_rollback=True):
                self._enter()
                execute(self.work, self.script.up)
        except psycopg.Error as exc:
            if unavailable(exc):
                raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
            return outcomes.Result(
                self.target, outcomes.Outcome.FAILED, describe(exc, self.script.up)
            )
        return outcomes.Result(
            self.target, outcomes.Outcome.PASSED, seconds=time.monotonic() - started
        )

    def down(self) -> outcomes.Result:
        down = self.script.down or ""
        started = time.monotonic()
        try:
            if self.separate and self.marker() is None:
                pass  # the down committed in the tenant's database; only the ledger is behind
            elif self.script.transactional:
                with self.work.transaction():
                    self._enter()
                    execute(self.work, down)
                    self._after_change(up=False)
                    if not self.separate:
                        self._record_rolled_back(time.monotonic() - started)
            else:
                role, path = self._scope_settings()
                for part in statements.split(down):
                    try:
                        self._enter_session(role, path)
                        execute(self.work, part.text)
                    finally:
                        self._leave_session()
                with self.work.transaction():
                    self._after_change(up=False)
        except psycopg.Error as exc:
            if unavailable(exc):
                raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
            message = describe(exc, down)
            with self.conn.transaction():
                self.conn.execute(
                    ledger.record_down_failure(self.schema),
                    (message, self.ctx.applied_by, self.target.uid, self.script.version),
                )
            return outcomes.Result(self.target, outcomes.Outcome.FAILED, message)
        seconds = time.monotonic() - started
        if self.separate or not self.script.transactional:
            with self.conn.transaction():
                self._record_rolled_back(seconds)
        return outcomes.Result(self.target, outcomes.Outcome.ROLLED_BACK, seconds=seconds)

    def record_applied(
        self, seconds: float, statements_done: int, attempt: bool
    ) -> outcomes.Result:
        with self.conn.transaction():
            self._upsert(ledger.State.APPLIED, seconds, statements_done, attempt)
        return outcomes.Result(self.target, outcomes.Outcome.APPLIED, seconds=seconds)

    def _enter(self) -> None:
        enter(self.work, self.ctx, self.target, self.script)

    def _after_change(self, up: bool) -> tuple[str, ...]:
        """Back to the operator's role; markers, and RLS on new shared tables."""
        self.work.execute("RESET ROLE")
        if self.separate:
            if up:
                self.work.execute(ledger.create_markers(self.schema))
                self.work.execute(
                    ledger.insert_marker(self.schema), (self.script.version, self.script.checksum)
                )
            else:
                self.work.execute(ledger.delete_marker(self.schema), (self.script.version,))
        if up and self.script.scope is api.Scope.SHARED:
            return tuple(shared.secure_tables(self.work, self.ctx.server.shared_schema))
        return ()

    def _scope_settings(self) -> tuple[str, str]:
        """The role and search_path ``scoping.enter`` picks, to set them per session."""
        with self.work.transaction(force_rollback=True):
            scoping.enter(self.work, self.target, "owner", self.ctx.server.shared_schema)
            row = self.work.execute(
                "SELECT current_setting('role'), current_setting('search_path')"
            ).fetchone()
        assert row is not None
        return str(row[0]), str(row[1])

    def _enter_session(self, role: str, path: str) -> None:
        """Session-level scope and timeouts: no transaction stays open."""
        self.work.execute(
            "SELECT set_config('role', %s, false), set_config('search_path', %s, false),"
            " set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
            (role, path, self.script.lock_timeout, self.script.statement_timeout),
        )

    def _clear_invalid_index(self, statement: statements.Statement) -> None:
        """Drop the invalid index an earlier, failed CONCURRENTLY build left behind."""
        name = statements.concurrent_index(statement)
        if name is None:
            return
        found = self.work.execute(INVALID_INDEX, (name,)).fetchone()
        if found:
            self.work.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(found[0], found[1])
                )
            )

    def _leave_session(self) -> None:
        if not self.work.broken:
            self.work.execute(
                "RESET ROLE; RESET search_path; RESET lock_timeout; RESET statement_timeout"
            )

    def _record(
        self,
        state: ledger.State,
        seconds: float | None,
        statements_done: int,
        attempt: bool,
        error: str | None = None,
    ) -> dict[str, Any]:
        return ledger.record(
            uid=self.target.uid,
            version=self.script.version,
            namespace=self.target.namespace,
            tenant=self.target.name,
            migration=self.script.name,
            description=self.script.description,
            scope=self.script.scope.value,
            checksum=self.script.checksum,
            state=state,
            applied_by=self.ctx.applied_by,
            attempt=attempt,
            statements_done=statements_done,
            duration_ms=None if seconds is None else round(seconds * 1000),
            error=error,
        )

    def _upsert(
        self, state: ledger.State, seconds: float | None, statements_done: int, attempt: bool
    ) -> None:
        record = self._record(state, seconds, statements_done, attempt)
        self.conn.execute(ledger.upsert(self.schema), record)

    def _record_rolled_back(self, seconds: float) -> None:
        self.conn.execute(
            ledger.record_rolled_back(self.schema),
            (round(seconds * 1000), self.ctx.applied_by, self.target.uid, self.script.version),
        )

    def _failed(
        self,
        exc: psycopg.Error,
        text: str,
        attempt: bool,
        statements_done: int,
        part: tuple[int, statements.Statement] | None = None,
    ) -> outcomes.Result:
        """Record a failure of the user's SQL with the database's message and position."""
        if unavailable(exc):
            raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
        if part is None:
            message = describe(exc, text)
        else:
            index, statement = part
            message = f"statement {index + 1} at line {statement.line}: " + describe(
                exc, text, statement.line
            )
        attempts = self.row.attempts + 1
        transient = isinstance(exc, TRANSIENT) and attempts < MAX_TRANSIENT_ATTEMPTS
        state = ledger.State.RETRY if transient else ledger.State.FAILED
        with self.conn.transaction():
            record = self._record(state, None, statements_done, attempt, error=message)
            self.conn.execute(ledger.upsert(self.schema), record)
        return outcomes.Result(
            self.target, outcomes.Outcome.RETRY if transient else outcomes.Outcome.FAILED, message
        )


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
