"""When a BackupSchedule runs and which of its Backups retention deletes."""

from datetime import UTC, datetime, timedelta

import pytest

from tenantdb.controllers import backups, schedules
from tenantdb.core.backups import manifest

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 3 * * *", datetime(2026, 3, 2, 3, 0, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 3, 1, 12, 15, tzinfo=UTC)),
        ("*/5 * * * * *", datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)),  # seconds first
        ("30 0 12 * * *", datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)),
        ("@daily", datetime(2026, 3, 2, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_run_follows_cron_with_an_optional_seconds_field(
    expression: str, expected: datetime
) -> None:
    assert schedules.next_run(expression, START) == expected


def test_an_expression_cron_cannot_parse_is_refused() -> None:
    with pytest.raises(ValueError, match="not a cron expression"):
        schedules.next_run("61 * * * *", START)


def _child(name: str, hours_ago: float, phase: str | None) -> schedules.Child:
    return schedules.Child(name, START - timedelta(hours=hours_ago), phase)


def test_retention_keeps_the_newest_completed_and_never_a_running_backup() -> None:
    children = [
        _child("a", 5, "Completed"),
        _child("b", 4, "Failed"),
        _child("c", 3, "Completed"),
        _child("d", 2, "Completed"),
        _child("e", 1, "Running"),
    ]
    assert schedules.expired(children, keep=2, max_age_seconds=None, now=START) == ["a"]
    assert schedules.expired(children, keep=None, max_age_seconds=3.5 * 3600, now=START) == [
        "a",
        "b",
    ]
    assert schedules.expired(children, keep=None, max_age_seconds=None, now=START) == []


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0B"), (1023, "1023B"), (1536, "1.5KiB"), (5 * 2**30, "5.0GiB")]
)
def test_sizes_read_as_kubectl_users_expect(size: int, text: str) -> None:
    assert manifest.human_size(size) == text


def test_ttl_ages() -> None:
    assert backups.age("90m") == timedelta(minutes=90)
    assert backups.age("30d") == timedelta(days=30)


@pytest.mark.parametrize(
    ("kind", "deleting", "phase", "expected"),
    [
        ("MODIFIED", False, "Completed", True),
        (None, False, "Completed", False),  # the listing at start: left to the next look
        ("MODIFIED", True, "Completed", False),  # retention deleting it
        ("MODIFIED", False, "Running", False),
        ("DELETED", False, "Completed", False),
    ],
)
def test_retention_follows_only_a_completion_seen_live(
    kind: str | None, deleting: bool, phase: str, expected: bool
) -> None:
    meta = {"deletionTimestamp": "2026-03-01T12:00:00Z"} if deleting else {}
    event = {"type": kind, "object": {}}
    found = schedules.just_completed(event=event, meta=meta, status={"phase": phase})  # type: ignore[arg-type]
    assert found is expected
