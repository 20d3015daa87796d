"""Health thresholds, aggregates, reset ordering and migration expectations: pure logic."""

from datetime import UTC, datetime

from tenantdb.api import conditions
from tenantdb.core import expectations, resetting, usage
from tenantdb.core.migrations import scripts
from tenantdb.settings import UsageSettings


def tenant(**changes: object) -> usage.TenantUsage:
    values: dict[str, object] = {
        "uid": "u1",
        "name": "acme",
        "namespace": "ns",
        "isolation": "schema",
        "plan": "free",
        "database": "app",
        "role": "t_acme",
        "bytes": 1000,
        "tables": 3,
        "connections": 0,
        "connection_limit": 5,
        "oldest_transaction": None,
        "invalid_indexes": (),
        "measured_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(changes)
    return usage.TenantUsage(**values)  # type: ignore[arg-type]


def test_each_threshold_is_named_and_a_quiet_tenant_is_healthy() -> None:
    limits = UsageSettings(connections_near=0.8, transaction_age=3600)
    assert usage.assess(tenant(connections=3), limits) == []
    assert usage.assess(tenant(connection_limit=None, connections=500), limits) == []
    problems = usage.assess(
        tenant(connections=4, oldest_transaction=7200.0, invalid_indexes=("i1",)), limits
    )
    assert [p.reason for p in problems] == [
        conditions.Reason.CONNECTIONS_NEAR_LIMIT,
        conditions.Reason.LONG_TRANSACTION,
        conditions.Reason.INVALID_INDEXES,
    ]
    assert "2.0h" in problems[1].message and "i1" in problems[2].message


def test_aggregates_count_plans_and_modes_and_each_shared_space_once() -> None:
    found = [
        tenant(uid="a", connections=5),
        tenant(uid="b", plan="standard", connection_limit=20),
        tenant(uid="c", isolation="shared", bytes=None, space_bytes=700),
        tenant(uid="d", isolation="shared", bytes=None, space_bytes=700),
    ]
    totals = usage.aggregate(found, UsageSettings())
    assert totals.near_limit == {"free": 1, "standard": 0}
    assert totals.bytes == {"schema": 2000, "shared": 700, "database": 0}
    assert totals.tenants[("shared", "free")] == 2
    assert totals.unhealthy["ConnectionsNearLimit"] == 1


def test_dependents_are_emptied_before_what_they_reference() -> None:
    order = resetting.dependents_first(
        ["users", "leads", "companies"], [("leads", "companies"), ("leads", "users")]
    )
    assert order.index("leads") < order.index("companies")
    assert order.index("leads") < order.index("users")
    assert resetting.dependents_first(["a", "b"], [("a", "b"), ("b", "a")]) == ["a", "b"]


def script(version: int, up: str) -> scripts.Script:
    return scripts.Script(version=version, name=f"v{version}", up=up)


def test_expectations_follow_creates_renames_drops_and_writes() -> None:
    found = expectations.expected(
        [
            script(2, 'ALTER TABLE users RENAME TO people; INSERT INTO "Codes" VALUES (1)'),
            script(
                1,
                'CREATE TABLE users (id int); CREATE TABLE "Codes" (c int); CREATE TABLE Old (a int)',
            ),
            script(3, "DROP TABLE IF EXISTS old; CREATE TABLE elsewhere.t (a int)"),
            script(4, "DO $$ BEGIN EXECUTE 'CREATE TABLE x ()'; END $$"),
        ],
        "tenant_schema",
    )
    assert found.tables == {"people": 2, "Codes": 1}
    assert found.written == {"Codes": 2}
    assert found.unread == ["version 4 line 1: DO may create tables unseen"]


def test_the_sample_migrations_are_read_whole() -> None:
    from tests.integration.test_seeding_support import MIGRATIONS  # noqa: PLC0415

    found = expectations.expected(scripts.load_directory(MIGRATIONS), "s")
    assert found.unread == [] and len(found.tables) == 12
