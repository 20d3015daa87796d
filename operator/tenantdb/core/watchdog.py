"""The statement watchdog: each plan's ``statement_timeout``, enforced from outside the session.

``statement_timeout`` on a login role is only a default: any session can
``SET statement_timeout = 0``. Each tick, one query reads the statements of
every tenant's login role that have been running past their plan's limit
plus a grace (``pg_stat_activity`` joined to the registry); ``decide`` picks
which to cancel and which, still running a further grace after their
cancel, to end by terminating the session; ``Watchdog.tick`` signals exactly
the backends still running the statement that was judged.

It needs no superuser: ``pg_read_all_stats`` shows other roles'
``query_start``, ``pg_signal_backend`` lets a role signal any non-superuser
backend. It never reads a statement's text (``query`` may hold secrets).
It owns no state in the database and changes nothing but those backends.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from tenantdb.core import connecting, naming
from tenantdb.settings import PlanLimits

_DURATION = re.compile(
    r"^\s*(?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>us|ms|s|min|h|d)?\s*$"
)
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


class Action(StrEnum):
    """What the watchdog does to a statement past its plan's limit."""

    CANCEL = "cancel"
    """``pg_cancel_backend``: the statement fails, the session stays."""
    TERMINATE = "terminate"
    """``pg_terminate_backend``: the session ends (the statement ignored its cancel)."""


SIGNALS = {Action.CANCEL: "pg_cancel_backend", Action.TERMINATE: "pg_terminate_backend"}


def limit_seconds(value: str | int | float) -> float | None:
    """A ``statement_timeout`` value in seconds, as PostgreSQL reads it; None if 0 (no limit).

    A bare number is milliseconds; units are ``us``, ``ms``, ``s``, ``min``,
    ``h`` and ``d``. Raises ``ValueError`` for anything else.
    """
    match = _DURATION.fullmatch(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a PostgreSQL duration")
    seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"] or "ms"]
    return seconds if seconds > 0 else None


def statement_limits(plans: Mapping[str, PlanLimits]) -> tuple[dict[str, float], list[str]]:
    """Each plan's limit in seconds (plans without one left out), and the plans it cannot read."""
    limits: dict[str, float] = {}
    unreadable = []
    for plan, plan_limits in plans.items():
        try:
            seconds = limit_seconds(plan_limits.statement_timeout)
        except ValueError:
            unreadable.append(plan)
            continue
        if seconds is not None:
            limits[plan] = seconds
    return limits, unreadable


@dataclass(frozen=True)
class Statement:
    """One tenant statement running long, as ``pg_stat_activity`` shows it (never its text)."""

    pid: int
    query_start: datetime
    running: float
    """Seconds since ``query_start``, by the server's clock."""
    uid: str
    name: str
    namespace: str
    plan: str
    role: str

    @property
    def key(self) -> tuple[int, datetime]:
        """The statement itself: a backend and when its current statement began."""
        return (self.pid, self.query_start)


@dataclass(frozen=True)
class Verdict:
    """What to do to one statement, and why."""

    action: Action
    statement: Statement
    limit: float
    """The plan's limit, in seconds."""
    since_cancel: float | None = None
    """Seconds it kept running after it was cancelled (terminations only)."""


@dataclass(frozen=True)
class Signalled:
    """What the watchdog already did to one statement."""

    cancelled_at: float
    """The statement's ``running`` when it was cancelled."""
    terminated: bool = False
    """Its session was terminated too (the backend may linger a moment)."""


Memory = dict[tuple[int, datetime], Signalled]
"""Signals sent, by statement (``Statement.key``)."""


def decide(
    statements: Iterable[Statement],
    limits: Mapping[str, float],
    grace: float,
    terminate_grace: float,
    memory: Mapping[tuple[int, datetime], Signalled],
) -> tuple[list[Verdict], Memory]:
    """Cancel what runs past limit + grace; terminate what runs on terminate_grace after that.

    Each statement is cancelled once and terminated once at most. The
    returned memory keeps only the statements still seen; ``remember`` adds
    the signals actually sent. Pure.
    """
    verdicts = []
    kept: Memory = {}
    for statement in statements:
        limit = limits.get(statement.plan)
        if limit is None:
            continue
        signalled = memory.get(statement.key)
        if signalled is None:
            if statement.running > limit + grace:
                verdicts.append(Verdict(Action.CANCEL, statement, limit))
            continue
        kept[statement.key] = signalled
        since = statement.running - signalled.cancelled_at
        if not signalled.terminated and since >= terminate_grace:
            verdicts.append(Verdict(Action.TERMINATE, statement, limit, since))
    return verdicts, kept


def remember(memory: Memory, done: Iterable[Verdict]) -> Memory:
    """The memory after the signals in ``done`` were sent."""
    updated = dict(memory)
    for verdict in done:
        key = verdict.statement.key
        if verdict.action is Action.CANCEL:
            updated[key] = Signalled(verdict.statement.running)
        elif key in updated:
            updated[key] = Signalled(updated[key].cancelled_at, terminated=True)
    return updated


def overrunning(control_schema: naming.Identifier) -> sql.Composed:
    """Active statements of tenant login roles past their plan's limit + grace.

    Parameters: ``plans`` and ``limits`` (parallel arrays, seconds) and
    ``grace`` (seconds). One query for every tenant; ``query`` is not read.
    """
    return sql.SQL(
        """
        SELECT a.pid, a.query_start,
               extract(epoch FROM clock_timestamp() - a.query_start)::float8,
               t.uid, t.name, t.namespace, t.plan, t.login_role
        FROM pg_stat_activity a
        JOIN {tenants} t ON t.login_role = a.usename
        JOIN unnest(%(plans)s::text[], %(limits)s::float8[]) AS p (plan, seconds)
          ON p.plan = t.plan
        WHERE a.state = 'active' AND a.backend_type = 'client backend'
          AND a.pid <> pg_backend_pid()
          AND a.query_start < clock_timestamp() - make_interval(secs => p.seconds + %(grace)s)
        ORDER BY a.query_start
        """
    ).format(tenants=sql.Identifier(control_schema, "tenants"))


def signal(action: Action) -> sql.Composed:
    """Signal the backends still running the given statements; one row per backend signalled.

    Parameters: ``pids`` and ``starts`` (parallel arrays of pid and
    ``query_start``). A backend whose statement ended meanwhile (or whose
    pid now belongs to another session) is left alone. The signal is in the
    select list of a materialised CTE on purpose: in a ``WHERE`` clause the
    planner may push it down to every row of ``pg_stat_activity``, before
    the join has chosen the targets.
    """
    return sql.SQL(
        """
        WITH targets AS MATERIALIZED (
            SELECT a.pid FROM pg_stat_activity a
            JOIN unnest(%(pids)s::int[], %(starts)s::timestamptz[]) AS s (pid, query_start)
              ON s.pid = a.pid AND s.query_start = a.query_start
            WHERE a.state = 'active'
        )
        SELECT pid, {function}(pid) FROM targets
        """
    ).format(function=sql.Identifier(SIGNALS[action]))


@dataclass
class Watchdog:
    """The watchdog's settings and its memory between ticks (what it signalled)."""

    control_schema: naming.Identifier
    limits: Mapping[str, float]
    """Each plan's ``statement_timeout`` in seconds (``statement_limits``)."""
    grace: float
    terminate_grace: float
    memory: Memory = field(default_factory=dict)

    def tick(self, pool: psycopg_pool.ConnectionPool) -> list[Verdict]:
        """Look once at every tenant's statements and act; return what was done."""
        if not self.limits:
            return []
        plans = sorted(self.limits)
        params = {"plans": plans, "limits": [self.limits[p] for p in plans], "grace": self.grace}
        with connecting.connection(pool) as conn:
            rows = conn.execute(overrunning(self.control_schema), params).fetchall()
            verdicts, memory = decide(
                [Statement(*row) for row in rows],
                self.limits,
                self.grace,
                self.terminate_grace,
                self.memory,
            )
            done = [v for action in Action for v in _carry_out(conn, action, verdicts)]
        self.memory = remember(memory, done)
        return done


def _carry_out(
    conn: psycopg.Connection[Any], action: Action, verdicts: Sequence[Verdict]
) -> list[Verdict]:
    """Send one kind of signal in one statement; keep the verdicts actually carried out."""
    chosen = [v for v in verdicts if v.action is action]
    if not chosen:
        return []
    params = {
        "pids": [v.statement.pid for v in chosen],
        "starts": [v.statement.query_start for v in chosen],
    }
    rows = conn.execute(signal(action), params).fetchall()
    signalled = {pid for pid, sent in rows if sent}
    return [v for v in chosen if v.statement.pid in signalled]


def describe(verdict: Verdict) -> str:
    """A sentence for the Tenant's event: durations and the plan, never the statement."""
    statement = verdict.statement
    if verdict.action is Action.CANCEL:
        return (
            f"a statement ran {statement.running:.0f}s, past the {statement.plan} plan's"
            f" statement_timeout of {verdict.limit:g}s; it was cancelled"
        )
    return (
        f"a statement kept running {verdict.since_cancel or 0.0:.0f}s after it was cancelled"
        f" ({statement.running:.0f}s in all; the {statement.plan} plan's statement_timeout"
        f" is {verdict.limit:g}s); its session was terminated"
    )
