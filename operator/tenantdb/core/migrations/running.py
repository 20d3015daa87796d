"""How one script runs on one tenant once the engine holds the tenant's lock.

Two connections: ``conn``, the operator's, whose transaction holds the
tenant's lock and records the outcome in the ledger (committed when the
lock is released); and ``work``, a session as the tenant's owner role
(``sessions.tenant_session``), the only place the user's SQL is sent.

Transactional: one transaction on ``work`` with ``SET LOCAL`` timeouts and
the tenant's search_path, a marker row (``markers``), the user's SQL and
COMMIT, all in one message (``sessions.scope_prefix``, ``_marker_first``,
``sessions.COMMIT_AFTER``; shared scope secures the space's tables before
it commits); then the ledger row on ``conn``. A marker without a ledger row
is a crash between the two commits, recorded on the next run. Where some
version is applied already, the marker goes in without reading the marker
table first (``try_in_transaction``): a plain INSERT, which fails if this
version has a marker, and only then is the table read. Round trips on
``work``: that one message; on ``conn``, the ledger row, the lock's COMMIT
(``locking.commit_with``) and no wait for its WAL flush
(``LEDGER_AFTER_MARKER``).
``transactional: false``: statement by statement with session-level
settings and no open transaction on ``work``; the ledger's
``statements_done`` advances after each statement on a connection of its
own, committed at once, so a retry resumes after the last statement that
completed.

Shared scope: the target is one namespace's shared space, the session is
as that space's owner. Before the change commits, still on that session,
the search_path is pinned to ``pg_catalog`` and every table of the space
is brought under row-level security (``securing.secure_tables``), so no new
table is ever committed without it.
"""

import time
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.api import migrations as api
from tenantdb.core import connecting, errors, locking, scoping, securing, shared
from tenantdb.core.migrations import ledger, markers, outcomes, scripts, sessions, statements

MAX_TRANSIENT_ATTEMPTS = 5
"""After this many attempts a transient error counts as a failure."""

Connection = sessions.Connection

INVALID_INDEX = sql.SQL(
    "SELECT n.nspname, c.relname FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s) AND NOT i.indisvalid"
)
"""An invalid index by name, resolved through the current search_path (parameter: name).

It runs on the tenant's session between the script's statements, where the script may
have made temporary relations (``pg_temp`` is searched first for relations unless
named): every catalog is qualified, so only the index name goes through the path."""

LEAVE_USER_SCOPE = "RESET ROLE; SET LOCAL search_path = pg_catalog, pg_temp"
"""Back to the session user, resolving nothing the user's SQL may have created
(``pg_temp`` named last: unnamed, it would be searched first for relations)."""

LEDGER_AFTER_MARKER = sql.SQL("SET LOCAL synchronous_commit = off")
"""An applied ledger row commits without waiting for its WAL to reach disk (or a
synchronous standby): the outcome is already durable in the tenant's marker.

Every call of ``record_applied`` comes after a marker of this version committed
on the tenant's session (in the change's own transaction, or in the
``_after_change`` transaction of a ``transactional: false`` run), or after one
was found there. A crash or a failover can lose only a suffix of the WAL, and
this commit's record comes after the marker's (it is sent once the tenant's
COMMIT has returned), so whatever survives the crash, the ledger row is never
kept without the marker: either both are there, or the marker alone, which is
what a crash between the two commits leaves anyway: the next run finds the
marker, checks who may write the marker table, and records the version applied
without running it again (``engine._up``). The lock needs nothing: it ends with
the transaction either way. Failures and rolled-back rows keep waiting for their
flush: no marker stands for them."""


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
        self.shared_schema = ctx.server.shared_schema
        self.space = (
            shared.space_of(target.schema_name, target.namespace, self.shared_schema)
            if target.isolation == "shared"
            else None
        )
        """The shared space a shared-scope target is (None for a tenant)."""
        self._markers: bool | None = None
        """Whether the marker table exists; None: not asked yet."""
        self._offset = 0
        """Characters of our own statements sent before the user's SQL in the message
        being run: error positions are made relative to the user's SQL."""

    def marker(self) -> str | None:
        """The tenant's own record of this version (its checksum), if any.

        Present while the ledger says otherwise: the change committed and
        the operator stopped before the ledger write.
        """
        found = self._marker_row()
        return str(found[0]) if found and not found[1] else None

    def _marker_row(self) -> tuple[str, bool] | None:
        """This version's marker: (checksum, whether its ``down`` committed), or None."""
        if not self._markers_exist():
            return None
        query = markers.select_marker(self.target, self.shared_schema)
        row = self.work.execute(query, (self.script.version,)).fetchone()
        return (str(row[0]), bool(row[1])) if row else None

    def marker_writers(self) -> list[str]:
        """Roles besides the owner that may write the marker table (a grant the owner
        made): a marker is then no proof that the change committed."""
        if not self._markers_exist():
            return []
        name = markers.qualified_name(self.target, self.shared_schema)
        row = self.work.execute(markers.writers_query(), (name,)).fetchone()
        return [str(r) for r in row[0]] if row and row[0] else []

    def _markers_exist(self) -> bool:
        if self._markers is None:
            name = markers.qualified_name(self.target, self.shared_schema)
            exists = self.work.execute(markers.exists_query(), (name,)).fetchone()
            self._markers = bool(exists and exists[0])
        return self._markers

    def try_in_transaction(self) -> outcomes.Result | None:
        """``in_transaction`` without reading the marker table first: the new marker goes
        in with a plain INSERT (``markers.insert_new_marker``), which fails if the
        version has a marker or there is no marker table. None when the change failed
        and that is why (the marker table read after the rollback says so): the caller
        reads the marker and decides (``engine._up``)."""
        return self._in_transaction(read=False)

    def in_transaction(self) -> outcomes.Result:
        """The marker, the change and COMMIT on the tenant's session, then the ledger row,
        once the marker table has been read (``marker``): it is created if missing, and
        a marker whose ``down`` committed is marked applied again."""
        result = self._in_transaction(read=True)
        assert result is not None  # only an unread marker table can be in the way
        return result

    def _in_transaction(self, read: bool) -> outcomes.Result | None:
        """One message on the tenant's session: BEGIN and the scope, the marker (before the
        user's SQL, so nothing the user's SQL does to its session can steer the marker
        write), the user's SQL and COMMIT (``sessions.COMMIT_AFTER``); shared scope
        secures the space's tables first and commits after. Then the ledger row."""
        started = time.monotonic()
        findings: tuple[str, ...] = ()
        secure = self.script.scope is api.Scope.SHARED and self.space is not None
        prefix = sessions.scope_prefix(self.work, self.ctx, self.target, self.script)
        prefix += self._marker_first(read)
        try:
            with sessions.Transaction(self.work):
                self._offset = len(prefix)
                suffix = "" if secure else sessions.COMMIT_AFTER
                sessions.execute(self.work, self.script.up, prefix, suffix)
                self._offset = 0
                seconds = time.monotonic() - started
                if secure:
                    findings = self._secure()
            self._markers = True
        except psycopg.Error as exc:
            if not read and self._marker_in_the_way(exc):
                self._offset = 0
                return None
            return self._failed(exc, self.script.up, attempt=True, statements_done=0)
        result = self.record_applied(seconds, 0, attempt=True)
        return outcomes.Result(self.target, result.outcome, seconds=seconds, findings=findings)

    def _marker_first(self, read: bool) -> str:
        """The marker's statements, bound client-side, ending in a statement separator:
        what goes between the scope and the user's SQL."""
        version, checksum = self.script.version, self.script.checksum
        if read:
            statements = self._marker_statements(up=True)
        else:
            statements = [markers.insert_new_marker(self.target, self.shared_schema)]
        query = sql.SQL(";\n").join(statements)
        bound = psycopg.ClientCursor(self.work).mogrify(query, (version, checksum))
        return bound + ";\n"

    def _marker_in_the_way(self, exc: psycopg.Error) -> bool:
        """Whether the plain marker INSERT is what failed: the version has a marker (a
        unique violation) or there is no marker table (undefined). Read after the
        rollback, so it shows the table as it was before the change."""
        if not isinstance(exc, psycopg.errors.UniqueViolation | psycopg.errors.UndefinedTable):
            return False
        self._markers = None
        return not self._markers_exist() or self._marker_row() is not None

    def stepwise(self) -> outcomes.Result:
        parts = statements.split(self.script.up)
        locking.release_snapshot(self.conn)
        with connecting.connection(self.ctx.server.pool) as progress:
            record = self._record(ledger.State.RUNNING, None, 0, attempt=True)
            row = progress.execute(ledger.begin_stepwise(self.schema), record).fetchone()
            done = int(row[0]) if row else 0
            started = time.monotonic()
            for index in range(done, len(parts)):
                failure: psycopg.Error | None = None
                try:
                    self._enter_session()
                    self._clear_invalid_index(parts[index])
                    sessions.execute(self.work, parts[index].text)
                except psycopg.Error as exc:
                    failure = exc
                if failure is not None:
                    part = parts[index]
                    return self._failed(
                        failure,
                        part.text,
                        attempt=False,
                        statements_done=index,
                        part=(index, part),
                    )
                progress.execute(
                    ledger.record_step(self.schema),
                    (index + 1, self.target.uid, self.script.version),
                )
        seconds = time.monotonic() - started
        self.work.execute("RESET ALL")
        with self.work.transaction():
            findings = self._after_change(up=True)
        result = self.record_applied(seconds, len(parts), attempt=False)
        return outcomes.Result(self.target, result.outcome, seconds=seconds, findings=findings)

    def dry_run(self) -> outcomes.Result:
        started = time.monotonic()
        try:
            with sessions.open_scope(self.work, self.ctx, self.target, self.script) as tx:
                try:
                    sessions.execute(self.work, self.script.up)
                finally:
                    tx.end(commit=False)
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
            found = self._marker_row()
            if found is not None and found[1] and not self.marker_writers():
                pass  # the down committed on the tenant's session; only the ledger is behind
            elif self.script.transactional:
                with sessions.open_scope(self.work, self.ctx, self.target, self.script):
                    sessions.execute(self.work, down)
                    self._after_change(up=False)
            else:
                locking.release_snapshot(self.conn)
                for part in statements.split(down):
                    self._enter_session()
                    sessions.execute(self.work, part.text)
                self.work.execute("RESET ALL")
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
        with self.conn.transaction():
            self.conn.execute(
                ledger.record_rolled_back(self.schema),
                (round(seconds * 1000), self.ctx.applied_by, self.target.uid, self.script.version),
            )
        return outcomes.Result(self.target, outcomes.Outcome.ROLLED_BACK, seconds=seconds)

    def record_applied(
        self, seconds: float, statements_done: int, attempt: bool
    ) -> outcomes.Result:
        """The ledger row, committed with the lock's release in the same round trip,
        without waiting for its WAL flush (``LEDGER_AFTER_MARKER``)."""
        record = self._record(ledger.State.APPLIED, seconds, statements_done, attempt)
        statement = sql.SQL(";\n").join([LEDGER_AFTER_MARKER, ledger.upsert(self.schema)])
        locking.commit_with(self.conn, statement, record)
        return outcomes.Result(self.target, outcomes.Outcome.APPLIED, seconds=seconds)

    def _after_change(self, up: bool) -> tuple[str, ...]:
        """Still in the change's transaction, back to the session user with nothing the
        user's SQL created on the search_path: the marker, and RLS on shared tables
        (``transactional: false`` and ``down``; a transactional ``up`` writes its
        marker before the user's SQL). One round trip, RLS on shared tables aside."""
        statements: list[sql.Composable] = [sql.SQL(LEAVE_USER_SCOPE)]
        statements += self._marker_statements(up)
        params = (self.script.version, self.script.checksum)
        sessions.batch(self.work, sql.SQL(";\n").join(statements), params)
        self._markers = True
        if up and self.script.scope is api.Scope.SHARED and self.space is not None:
            return tuple(securing.secure_tables(self.work, self.space, as_owner=True))
        return ()

    def _marker_statements(self, up: bool) -> list[sql.Composable]:
        """The marker table if missing (``_markers_exist`` read it), and this version's
        marker, applied or rolled back (parameters: version, checksum)."""
        statements: list[sql.Composable] = []
        if not self._markers_exist():
            groups: list[str] = (
                [self.space.members_role, self.space.pooled_role] if self.space else []
            )
            readers = markers.readers(self.target, groups)
            statements.append(markers.create_markers(self.target, self.shared_schema, readers))
        mark = markers.insert_marker if up else markers.mark_rolled_back
        statements.append(mark(self.target, self.shared_schema))
        return statements

    def _secure(self) -> tuple[str, ...]:
        """Shared scope, after the user's SQL and before COMMIT: back to the session user
        with the search_path pinned, then RLS on every table of the space."""
        assert self.space is not None
        self.work.execute(LEAVE_USER_SCOPE)
        return tuple(securing.secure_tables(self.work, self.space, as_owner=True))

    def _enter_session(self) -> None:
        """Session-level scope and timeouts: no transaction stays open."""
        params = sessions.scope_params(self.ctx, self.target, self.script)
        self.work.execute(sessions.SESSION_SCOPE, params)

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
            message = sessions.describe(exc, text, offset=self._offset)
            self._offset = 0
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
