"""kopf's rule for the active replica, as the background loops apply it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tenantdb.controllers import leadership

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(priority: int, seen_ago: float = 1.0, lifetime: int = 15) -> dict[str, object]:
    seen = NOW - timedelta(seconds=seen_ago)
    return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": lifetime}


def test_the_highest_live_priority_works_the_others_wait() -> None:
    records = {"a": record(200), "b": record(100)}
    assert leadership.active_among(records, 200, NOW)
    assert not leadership.active_among(records, 100, NOW)


def test_a_dead_peer_of_higher_priority_does_not_hold_the_standby_back() -> None:
    records = {"a": record(200, seen_ago=20), "b": record(100)}
    assert leadership.active_among(records, 100, NOW)


def test_a_tie_pauses_both_as_kopf_does() -> None:
    records = {"a": record(100), "b": record(100)}
    assert not leadership.active_among(records, 100, NOW)


def test_alone_or_not_yet_recorded_a_replica_works() -> None:
    assert leadership.active_among({}, 100, NOW)
    assert leadership.active_among({"a": record(100)}, 100, NOW)
    assert leadership.active_among({"x": {"priority": 900}}, 100, NOW)  # no lastseen: dead


def test_kopfs_own_timestamps_are_read() -> None:
    kopf_written = {"priority": 300, "lastseen": (NOW - timedelta(seconds=2)).isoformat()}
    assert not leadership.active_among({"a": kopf_written, "b": record(100)}, 100, NOW)
