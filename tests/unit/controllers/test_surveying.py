"""When the usage survey writes a Tenant's status: pure decisions."""

import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from tenantdb.controllers import surveying
from tests.unit.core.test_usage import tenant

HEALTHY = ("True", "Healthy", "within every usage threshold")


def test_a_status_is_written_first_on_change_of_health_and_when_stale() -> None:
    now = tenant()
    last = surveying.Written(at=100.0, figures=surveying.Figures.of(now), health=HEALTHY)
    assert surveying.due(None, now, HEALTHY, None, 101.0, 600)
    assert not surveying.due(last, now, HEALTHY, HEALTHY, 101.0, 600)
    sick = ("False", "ConnectionsNearLimit", "4 of 5")
    assert surveying.due(last, now, sick, HEALTHY, 101.0, 600)
    assert surveying.due(last, now, HEALTHY, None, 101.0, 600)  # dropped from the object
    assert surveying.due(last, now, HEALTHY, HEALTHY, 700.0, 600)


def test_small_size_changes_wait_for_the_refresh_and_counts_do_not() -> None:
    before = tenant(bytes=1000)

    def moved(**change: object) -> bool:
        of = surveying.Figures.of
        return surveying.moved(of(before), of(replace(before, **change)))

    assert not moved(bytes=1050)
    assert moved(bytes=1200)
    assert moved(connections=1)
    assert moved(oldest_transaction=3.0)
    assert moved(tables=(before.tables or 0) + 1)


def test_usage_status_removes_what_is_gone_with_explicit_nulls() -> None:
    written = surveying.usage_status(tenant(oldest_transaction=None, bytes=None, space_bytes=5))
    assert written["oldestTransactionSeconds"] is None and written["bytes"] is None
    assert written["spaceBytes"] == 5 and written["measuredAt"] == "2026-01-01T00:00:00Z"


def test_first_writes_come_due_spread_over_one_refresh() -> None:
    starts = [surveying.first_refresh(f"uid-{n}", 1000.0, 600.0) for n in range(1000)]
    assert all(400.0 < at <= 1000.0 for at in starts)
    due_by_minute = Counter(int((at + 600.0 - 1000.0) // 60) for at in starts)
    assert sorted(due_by_minute) == list(range(10))  # some due in each sweep of the refresh
    assert max(due_by_minute.values()) < 2 * min(due_by_minute.values())
    assert surveying.first_refresh("uid-1", 1000.0, 600.0) == starts[1]  # fixed by the uid


def test_what_the_object_shows_counts_as_written_after_a_restart() -> None:
    measured = tenant(measured_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    shown = surveying.usage_status(replace(measured, measured_at=datetime(2026, 1, 1, tzinfo=UTC)))
    body = {"status": {"usage": shown}}
    seen = surveying.on_record(body, measured, HEALTHY)
    assert seen is not None and seen.figures == surveying.Figures.of(measured)
    assert 299.0 <= time.monotonic() - seen.at <= 301.0 + 1.0  # written 300 s before
    assert not surveying.due(seen, measured, HEALTHY, HEALTHY, time.monotonic(), 600)
    assert surveying.due(seen, measured, HEALTHY, HEALTHY, time.monotonic(), 120)
    grown = surveying.on_record(body, replace(measured, tables=4), HEALTHY)
    tables_4 = surveying.Figures.of(replace(measured, tables=4))
    assert grown is not None and surveying.moved(grown.figures, tables_4)
    assert surveying.on_record(body, measured, None) is None  # no Healthy shown: write it
    assert surveying.on_record({"status": {}}, measured, HEALTHY) is None
    garbled = {"status": {"usage": shown | {"measuredAt": "yesterday"}}}
    assert surveying.on_record(garbled, measured, HEALTHY) is None
