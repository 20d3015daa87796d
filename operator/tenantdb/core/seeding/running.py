"""The runner: each pending seeder in its own transaction, recorded with its rows.

Owns the loop over a plan: skip what the history already holds at the
same version, run the rest in dependency order, one transaction each,
acting as the tenant's login role, and write the history row in that same
transaction (or, for ``database`` tenants, right after its commit, on the
control database). The first failure stops the run: its transaction is
rolled back, earlier seeders stay committed, and ``SeedFailed`` says which
seeder failed and what the database answered.
"""

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
import sqlalchemy

from tenantdb.core import connecting, scoping
from tenantdb.core.seeding import context, declarations, errors, history, reports, sessions


@dataclass
class Run:
    """Everything one run needs besides the plan; the tenant connection opens on first use."""

    pool: psycopg_pool.ConnectionPool
    control_schema: str
    shared_schema: str
    operator_url: str = field(repr=False)
    """May carry the operator's password: never in ``repr()``."""
    location: scoping.TenantLocation
    profile: str
    applied_by: str
    progress: reports.Progress | None
    resources: contextlib.ExitStack
    """Closes the tenant connection when the caller's ``with`` block ends."""
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Run-time options by seeder name (``ctx.option``)."""
    _session: sessions.Session | None = None

    @property
    def session(self) -> sessions.Session:
        """The run's connection to the tenant's tables, opened when first needed."""
        if self._session is None:
            self._session = self.resources.enter_context(
                sessions.open_session(self.operator_url, self.location, self.shared_schema)
            )
        return self._session


def skip_reason(seeder: declarations.Seeder, entry: history.Entry | None) -> str | None:
    """Why a seeder need not run (its version is recorded), or None when it must."""
    if entry is None or entry.version != seeder.version:
        return None
    return f"already applied at version {entry.version}"


def drift(seeder: declarations.Seeder, entry: history.Entry | None) -> str:
    """A warning when the file changed but its version did not."""
    if entry is None or entry.version != seeder.version or entry.checksum == seeder.checksum:
        return ""
    return (
        f"changed since version {entry.version} was applied, but its version was not bumped:"
        " not re-run (bump VERSION to re-run it)"
    )


def apply(
    run: Run,
    plan: Sequence[declarations.Seeder],
    done: dict[str, history.Entry],
    report: reports.SeedReport,
) -> reports.SeedReport:
    """Run every seeder of ``plan`` that the history ``done`` does not hold at its version."""
    total = len(plan)
    for position, seeder in enumerate(plan, start=1):
        entry = done.get(seeder.name)
        reason = skip_reason(seeder, entry)
        if reason is not None:
            report.results.append(
                result(seeder, reports.Outcome.SKIPPED, detail=reason, warning=drift(seeder, entry))
            )
            emit(run, seeder, position, total, reports.State.SKIPPED)
            continue
        emit(run, seeder, position, total, reports.State.STARTED)
        try:
            rows, seconds = _apply_one(run, seeder, position, total)
        except Exception as exc:
            emit(run, seeder, position, total, reports.State.FAILED)
            raise failure(errors.SeedFailed, "seeder", seeder, exc, report) from exc
        report.results.append(result(seeder, reports.Outcome.APPLIED, rows, seconds))
        emit(run, seeder, position, total, reports.State.APPLIED)
    return report


def _apply_one(
    run: Run, seeder: declarations.Seeder, position: int, total: int
) -> tuple[int, float]:
    def record(control: psycopg.Connection[Any], rows: int, seconds: float) -> None:
        history.write(
            control, run.control_schema, run.location.uid, seeder, rows, seconds, run.applied_by
        )

    return in_tenant(run, seeder, position, total, seeder.seed, record)


def in_tenant(
    run: Run,
    seeder: declarations.Seeder,
    position: int,
    total: int,
    work: Callable[[context.Context], None],
    record: Callable[[psycopg.Connection[Any], int, float], None],
) -> tuple[int, float]:
    """Run ``work`` in one tenant transaction, then ``record`` it in the seed history.

    ``record`` gets the connection to write the history on (the tenant's own,
    inside the same transaction, when the control schema lives in the same
    database; a control connection right after the commit otherwise), the
    rows touched and the seconds taken up to then. Returns those two.
    """
    session = run.session
    started = time.monotonic()
    with sessions.tenant_transaction(session) as connection:
        before = sessions.rows_touched(session)
        work(make_context(run, connection, seeder, position, total))
        sessions.leave_tenant(session)
        rows = sessions.rows_touched(session) - before
        seconds = time.monotonic() - started
        if session.same_database:
            record(session.raw, rows, seconds)
        connection.commit()
    if not session.same_database:
        with connecting.connection(run.pool) as control:
            record(control, rows, seconds)
    return rows, seconds


def make_context(
    run: Run,
    connection: sqlalchemy.Connection,
    seeder: declarations.Seeder,
    position: int,
    total: int,
) -> context.Context:
    """The context one seeder's code receives."""
    location = run.location
    tenant = context.Tenant(location.uid, location.name, location.namespace, location.isolation)

    def report(done: int, expected: int) -> None:
        emit(run, seeder, position, total, reports.State.ROWS, done, expected)

    options = run.options.get(seeder.name)
    return context.Context(connection, run.session.raw, tenant, run.profile, report, options)


def failure(
    kind: type[errors.SeedFailed],
    verb: str,
    seeder: declarations.Seeder,
    exc: BaseException,
    report: reports.SeedReport,
) -> errors.SeedFailed:
    """The error saying which seeder failed and what the database (or the code) said."""
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    if isinstance(cause, psycopg.Error):
        sqlstate = cause.sqlstate
        said = connecting.describe(cause)
        transient = isinstance(cause, psycopg.OperationalError) or (sqlstate or "").startswith(
            connecting.UNAVAILABLE_SQLSTATE_CLASSES + connecting.TRANSIENT_SQLSTATES
        )
    else:
        sqlstate, said, transient = None, f"{type(cause).__name__}: {cause}", False
    applied = f"; earlier seeders kept ({', '.join(report.applied)})" if report.applied else ""
    message = (
        f"{verb} {seeder.name!r} (version {seeder.version}) failed and was rolled back: "
        f"{said}{applied}"
    )
    return kind(message, seeder.name, report, sqlstate=sqlstate, transient=transient)


def result(
    seeder: declarations.Seeder,
    outcome: reports.Outcome,
    rows: int = 0,
    seconds: float = 0.0,
    detail: str = "",
    warning: str = "",
) -> reports.SeederResult:
    return reports.SeederResult(
        seeder.name, seeder.version, seeder.profile.value, outcome, rows, seconds, detail, warning
    )


def emit(
    run: Run,
    seeder: declarations.Seeder,
    position: int,
    total: int,
    state: reports.State,
    done: int = 0,
    expected: int = 0,
) -> None:
    if run.progress is not None:
        with contextlib.suppress(Exception):
            run.progress(reports.ProgressEvent(seeder.name, position, total, state, done, expected))
