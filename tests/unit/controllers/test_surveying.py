"""When the usage survey writes a Tenant's status: pure decisions."""

from dataclasses import replace

from tenantdb.controllers import surveying
from tests.unit.core.test_usage import tenant

HEALTHY = ("True", "Healthy", "within every usage threshold")


def test_a_status_is_written_first_on_change_of_health_and_when_stale() -> None:
    now = tenant()
    last = surveying.Written(at=100.0, usage=now, health=HEALTHY)
    assert surveying.due(None, now, HEALTHY, None, 101.0, 600)
    assert not surveying.due(last, now, HEALTHY, HEALTHY, 101.0, 600)
    sick = ("False", "ConnectionsNearLimit", "4 of 5")
    assert surveying.due(last, now, sick, HEALTHY, 101.0, 600)
    assert surveying.due(last, now, HEALTHY, None, 101.0, 600)  # dropped from the object
    assert surveying.due(last, now, HEALTHY, HEALTHY, 700.0, 600)


def test_small_size_changes_wait_for_the_refresh_and_counts_do_not() -> None:
    before = tenant(bytes=1000)
    assert not surveying.moved(before, replace(before, bytes=1050))
    assert surveying.moved(before, replace(before, bytes=1200))
    assert surveying.moved(before, replace(before, connections=1))
    assert surveying.moved(before, replace(before, oldest_transaction=3.0))


def test_usage_status_removes_what_is_gone_with_explicit_nulls() -> None:
    written = surveying.usage_status(tenant(oldest_transaction=None, bytes=None, space_bytes=5))
    assert written["oldestTransactionSeconds"] is None and written["bytes"] is None
    assert written["spaceBytes"] == 5 and written["measuredAt"] == "2026-01-01T00:00:00Z"
