"""The watchdog's decisions, durations and SQL, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tenantdb.core import naming, watchdog
from tenantdb.settings import PlanLimits

START = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = {"brief": 2.0, "standard": 60.0}
CANCEL, TERMINATE = watchdog.Action.CANCEL, watchdog.Action.TERMINATE


def statement(running: float, pid: int = 101, plan: str = "brief") -> watchdog.Statement:
    return watchdog.Statement(pid, START, running, "uid-1", "acme", "default", plan, "t_acme_x")


def decide(
    statements: list[watchdog.Statement], memory: watchdog.Memory | None = None
) -> tuple[list[tuple[watchdog.Action, int]], watchdog.Memory]:
    verdicts, kept = watchdog.decide(statements, LIMITS, 1.0, 5.0, memory or {})
    return [(v.action, v.statement.pid) for v in verdicts], kept


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1500", 1.5),
        ("5min", 300.0),
        ("1 h", 3600.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        (2000, 2.0),
        ("250us", 0.00025),
    ],
)
def test_durations_are_read_as_postgresql_reads_them(value: str | int, seconds: float) -> None:
    assert watchdog.limit_seconds(value) == pytest.approx(seconds)


def test_zero_means_no_limit_and_nonsense_is_refused() -> None:
    assert watchdog.limit_seconds("0") is None
    assert watchdog.limit_seconds("0s") is None
    for bad in ("", "s", "2 weeks", "-1s", "2s; DROP TABLE x"):
        with pytest.raises(ValueError, match="not a PostgreSQL duration"):
            watchdog.limit_seconds(bad)


def test_plans_without_a_readable_limit_are_left_out_and_named() -> None:
    plans = {
        "free": PlanLimits(statement_timeout="30s"),
        "unbounded": PlanLimits(statement_timeout="0"),
        "typo": PlanLimits(statement_timeout="30 seconds"),
    }
    assert watchdog.statement_limits(plans) == ({"free": 30.0}, ["typo"])


def test_a_statement_is_cancelled_only_past_its_limit_plus_grace() -> None:
    assert decide([statement(2.9)])[0] == []
    assert decide([statement(3.1)])[0] == [(CANCEL, 101)]
    assert decide([statement(3.1, plan="standard")])[0] == []
    assert decide([statement(9999.0, plan="no-such-plan")])[0] == []


def test_a_cancelled_statement_is_terminated_after_the_further_grace_and_only_once() -> None:
    cancelled = watchdog.remember({}, watchdog.decide([statement(3.1)], LIMITS, 1.0, 5.0, {})[0])
    assert decide([statement(7.0)], cancelled)[0] == []  # 3.9 s after the cancel
    verdicts, kept = watchdog.decide([statement(8.2)], LIMITS, 1.0, 5.0, cancelled)
    assert [(v.action, v.since_cancel) for v in verdicts] == [(TERMINATE, pytest.approx(5.1))]
    terminated = watchdog.remember(kept, verdicts)
    assert decide([statement(9.0)], terminated)[0] == []  # the backend lingers a moment


def test_a_new_statement_on_the_same_backend_starts_afresh() -> None:
    cancelled = {(101, START): watchdog.Signalled(3.1)}
    later = watchdog.Statement(101, START.replace(minute=5), 3.5, "u", "n", "ns", "brief", "r")
    assert [
        (v.action, v.statement.key)
        for v in watchdog.decide([later], LIMITS, 1.0, 5.0, cancelled)[0]
    ] == [(CANCEL, later.key)]


def test_statements_no_longer_seen_are_forgotten() -> None:
    memory = {(101, START): watchdog.Signalled(3.1), (202, START): watchdog.Signalled(4.0)}
    assert set(decide([statement(4.0, pid=202)], memory)[1]) == {(202, START)}


def test_only_signals_actually_sent_are_remembered() -> None:
    assert watchdog.remember({}, []) == {}
    terminate_unknown = watchdog.Verdict(TERMINATE, statement(9.0), 2.0, 6.0)
    assert watchdog.remember({}, [terminate_unknown]) == {}


def test_the_overrun_query_reads_no_statement_text_and_joins_the_registry() -> None:
    text = watchdog.overrunning(naming.identifier("tenantdb")).as_string(None)
    assert '"tenantdb"."tenants"' in text
    assert "a.query," not in text and "a.query " not in text
    assert "state = 'active'" in text and "query_start" in text


@pytest.mark.parametrize(
    ("action", "function"),
    [(CANCEL, '"pg_cancel_backend"(pid)'), (TERMINATE, '"pg_terminate_backend"(pid)')],
)
def test_signals_only_reach_the_rows_the_join_chose(action: watchdog.Action, function: str) -> None:
    text = watchdog.signal(action).as_string(None)
    assert "AS MATERIALIZED" in text
    assert f"SELECT pid, {function} FROM targets" in text


def test_events_name_durations_and_plan_never_the_statement() -> None:
    cancel = watchdog.describe(watchdog.Verdict(CANCEL, statement(3.4), 2.0))
    assert cancel == (
        "a statement ran 3s, past the brief plan's statement_timeout of 2s; it was cancelled"
    )
    terminate = watchdog.describe(watchdog.Verdict(TERMINATE, statement(9.0), 2.0, 5.5))
    assert "after it was cancelled" in terminate and "terminated" in terminate
