"""How one script runs on one tenant once the engine holds the tenant's lock.

Transactional: one transaction with ``SET LOCAL`` timeouts, the tenant's
scope (``scoping.enter``), the user's SQL, then ``RESET ROLE`` and the
ledger row, committed together. ``transactional: false``: statement by
statement with session-level settings and no open transaction, the
ledger's ``statements_done`` advanced after each one, so a retry resumes
after the last statement that completed. ``database`` tenants: the change
commits in the tenant's own database together with a marker row there
(``markers``), and the ledger follows; a marker without a
ledger row is a crash between the two commits, recorded on the next run.

The user's SQL goes through ``sessions.execute``, as given, always after
the tenant's scope was entered.
"""

import functools
import time
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.api import migrations as api
from tenantdb.core import connecting, errors, naming, scoping, shared
from tenantdb.core.migrations import ledger, markers, outcomes, scripts, sessions, statements

MAX_TRANSIENT_ATTEMPTS = 5
"""After this many attempts a transient error counts as a failure."""

Connection = sessions.Connection

INVALID_INDEX = sql.SQL(
    "SELECT n.nspname, c.relname FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE i.indexrelid = to_regclass(%s) AND NOT i.indisvalid"
)
"""An invalid index by name, resolved through the current search_path (parameter: name)."""


@functools.cache
def _closing(schema: naming.Identifier) -> bytes:
    """RESET ROLE, the ledger row and COMMIT: the last batch of an in-place run,
    built once per control schema (parameters: a ``ledger.record`` mapping).
    An error stops the batch before COMMIT, so the change never commits
    without its row."""
    upsert = ledger.upsert(schema).as_bytes(None)
    return b"RESET ROLE;\n" + upsert + b";\nCOMMIT"


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
        self._markers: bool | None = None
        """Whether the tenant's database has the marker table; None: not asked yet."""

    def marker(self) -> str | None:
        """A ``database`` tenant's own record of this version (its checksum), if any.

        Present while the ledger says otherwise: the change committed in the
        tenant's database and the operator stopped before the ledger write.
        """
        if not self.separate or not self._markers_exist():
            return None
        found = self.work.execute(markers.select_marker(self.schema), (self.script.version,))
        row = found.fetchone()
        return str(row[0]) if row else None

    def _markers_exist(self) -> bool:
        """Whether the tenant's database has the marker table (asked once per run)."""
        if self._markers is None:
            exists = self.work.execute(markers.markers_exist(), (self.schema,)).fetchone()
            self._markers = bool(exists and exists[0])
        return self._markers

    def in_place(self, tx: sessions.Transaction, dry_run: bool) -> outcomes.Result:
        """The change inside the caller's transaction, which holds the tenant's lock
        and has already entered the tenant's scope (``enter``)."""
        started = time.monotonic()
        sessions.execute(self.work, self.script.up)
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
            record = self._record(ledger.State.APPLIED, seconds, 0, attempt=True)
            sessions.batch(self.work, _closing(self.schema), record)
        return outcomes.Result(
            self.target, outcomes.Outcome.APPLIED, seconds=seconds, findings=findings
        )

    def failed_in_place(
        self, exc: psycopg.Error, dry_run: bool, key: tuple[int, str]
    ) -> outcomes.Result:
        """Record what ``in_place`` raised, if the tenant's lock is still ours to take."""
        if sessions.unavailable(exc):
            raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
        message = sessions.describe(exc, self.script.up)
        if dry_run:
            return outcomes.Result(self.target, outcomes.Outcome.FAILED, message)
        state, outcome = self._failure_kind(exc)
        with self.conn.transaction():
            locked = self.conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", key
            ).fetchone()
            if locked and locked[0]:
                record = self._record(state, None, 0, attempt=True, error=message)
                self.conn.execute(ledger.upsert_failure(self.schema), record)
        return outcomes.Result(self.target, outcome, message)

    def in_transaction(self) -> outcomes.Result:
        """A ``database`` tenant: the change and its marker commit in the tenant's
        database, then the ledger row in the operator's."""
        started = time.monotonic()
        try:
            with self.work.transaction():
                self._enter()
                sessions.execute(self.work, self.script.up)
                seconds = time.monotonic() - started
                self._after_change(up=True)
        except psycopg.Error as exc:
            return self._failed(exc, self.script.up, attempt=True, statements_done=0)
        return self.record_applied(seconds, 0, attempt=True)

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
                sessions.execute(self.work, parts[index].text)
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
                sessions.execute(self.work, self.script.up)
        except psycopg.Error as exc:
            if sessions.unavailable(exc):
                raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
            return outcomes.Result(
                self.target, outcomes.Outcome.FAILED, sessions.describe(exc, self.script.up)
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
                    sessions.execute(self.work, down)
                    self._after_change(up=False)
                    if not self.separate:
                        self._record_rolled_back(time.monotonic() - started)
            else:
                role, path = self._scope_settings()
                for part in statements.split(down):
                    try:
                        self._enter_session(role, path)
                        sessions.execute(self.work, part.text)
                    finally:
                        self._leave_session()
                with self.work.transaction():
                    self._after_change(up=False)
        except psycopg.Error as exc:
            if sessions.unavailable(exc):
                raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
            message = sessions.describe(exc, down)
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
        sessions.enter(self.work, self.ctx, self.target, self.script)

    def _after_change(self, up: bool) -> tuple[str, ...]:
        """Back to the operator's role; markers, and RLS on new shared tables."""
        self.work.execute("RESET ROLE")
        if self.separate:
            if up:
                if not self._markers_exist():
                    self.work.execute(markers.create_markers(self.schema))
                    self._markers = True
                self.work.execute(
                    markers.insert_marker(self.schema), (self.script.version, self.script.checksum)
                )
            else:
                self.work.execute(markers.delete_marker(self.schema), (self.script.version,))
        if up and self.script.scope is api.Scope.SHARED:
            return tuple(shared.secure_tables(self.work, self.ctx.server.shared_schema))
        return ()

    def _scope_settings(self) -> tuple[str, str]:
        """The role and search_path ``scoping.enter`` picks, to set them per session."""
        return sessions.scope(self.target, self.ctx.server.shared_schema)

    def _enter_session(self, role: str, path: str) -> None:
        """Session-level scope and timeouts: no transaction stays open."""
        self.work.execute(
            "SELECT set_config('role', %s, false),"
            " set_config('search_path', quote_ident(%s), false),"
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
        if sessions.unavailable(exc):
            raise errors.DatabaseUnavailable(connecting.describe(exc)) from exc
        if part is None:
            message = sessions.describe(exc, text)
        else:
            index, statement = part
            message = f"statement {index + 1} at line {statement.line}: " + sessions.describe(
                exc, text, statement.line
            )
        state, outcome = self._failure_kind(exc)
        with self.conn.transaction():
            record = self._record(state, None, statements_done, attempt, error=message)
            self.conn.execute(ledger.upsert(self.schema), record)
        return outcomes.Result(self.target, outcome, message)

    def _failure_kind(self, exc: psycopg.Error) -> tuple[ledger.State, outcomes.Outcome]:
        """Retry a transient error until ``MAX_TRANSIENT_ATTEMPTS``; otherwise a failure."""
        transient = connecting.is_transient(exc.sqlstate)
        if transient and self.row.attempts + 1 < MAX_TRANSIENT_ATTEMPTS:
            return ledger.State.RETRY, outcomes.Outcome.RETRY
        return ledger.State.FAILED, outcomes.Outcome.FAILED
