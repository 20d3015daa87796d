"""Role settings: what the check expects per mode, how it compares, what the repair resets."""

from __future__ import annotations

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import naming, role_settings
from tenantdb.settings import PlanLimits

NAMES = naming.tenant_names("acme", "uid-1")
SHARED = naming.identifier("tenantdb_shared")
PLAN = PlanLimits(connection_limit=5, statement_timeout="2s")
GOLD = PlanLimits(connection_limit=50, statement_timeout="5min", work_mem="64MB")


def expected(mode: Isolation = Isolation.SCHEMA, limits: PlanLimits = PLAN) -> list:
    return role_settings.expected(NAMES, mode, SHARED, limits)


def observed(
    settings: dict[str, str],
    per_database: dict[str, dict[str, str]] | None = None,
    connection_limit: int = 5,
    owner: dict[str, str] | None = None,
) -> dict[str, role_settings.Observed]:
    return {
        NAMES.login_role: role_settings.Observed(
            NAMES.login_role, connection_limit, settings, per_database or {}
        ),
        NAMES.owner_role: role_settings.Observed(
            NAMES.owner_role, -1, owner if owner is not None else {"search_path": NAMES.schema}
        ),
    }


CLEAN = {"statement_timeout": "2s", "search_path": NAMES.schema}


@pytest.mark.parametrize(
    ("mode", "path", "roles"),
    [
        (Isolation.SCHEMA, NAMES.schema, 2),
        (Isolation.SHARED, SHARED, 1),
        (Isolation.DATABASE, "public", 2),
    ],
)
def test_expected_settings_follow_the_mode(mode: Isolation, path: str, roles: int) -> None:
    wanted = expected(mode, GOLD)
    assert len(wanted) == roles
    assert wanted[0].settings == {
        "statement_timeout": "5min",
        "work_mem": "64MB",
        "search_path": path,
    }
    assert wanted[0].connection_limit == 50
    if roles == 2:
        assert wanted[1].role == NAMES.owner_role
        assert wanted[1].settings == {"search_path": path}
        assert wanted[1].connection_limit is None


def test_a_role_as_provisioned_has_no_findings() -> None:
    assert role_settings.compare(expected(), observed(CLEAN)) == []
    quoted = {**CLEAN, "search_path": f'"{NAMES.schema}"'}
    assert role_settings.compare(expected(), observed(quoted)) == []


def test_changed_missing_extra_per_database_and_connection_limit_are_findings() -> None:
    found = role_settings.compare(
        expected(),
        observed(
            {"statement_timeout": "0", "work_mem": "2GB"},
            per_database={"postgres": {"lock_timeout": "0"}},
            connection_limit=500,
            owner={"search_path": "public", "enable_seqscan": "off"},
        ),
    )
    login, owner = NAMES.login_role, NAMES.owner_role
    assert found == [
        f"role {login} lacks search_path = {NAMES.schema}",
        f"role {login} sets statement_timeout to 0, not 2s",
        f"role {login} sets work_mem, which the operator does not",
        f"role {login} has settings in database postgres: lock_timeout",
        f"role {login} has CONNECTION LIMIT 500, not 5",
        f"role {owner} sets search_path to public, not {NAMES.schema}",
        f"role {owner} sets enable_seqscan, which the operator does not",
    ]


def test_values_of_settings_the_operator_does_not_manage_are_never_quoted() -> None:
    found = role_settings.compare(expected(), observed({**CLEAN, "app.token": "s3cr3t"}))
    assert found and not any("s3cr3t" in f for f in found)


def test_a_missing_role_is_left_to_the_role_check() -> None:
    assert role_settings.compare(expected(), {}) == []


def test_repair_resets_exactly_what_the_operator_did_not_set() -> None:
    statements = role_settings.removals(
        expected(),
        observed(
            {**CLEAN, "statement_timeout": "0", "work_mem": "2GB", "app.x": "1"},
            per_database={"postgres": {"search_path": "public"}},
        ),
    )
    login = NAMES.login_role
    assert [s.as_string(None) for s in statements] == [
        f'ALTER ROLE "{login}" RESET "app"."x"',
        f'ALTER ROLE "{login}" RESET "work_mem"',
        f'ALTER ROLE "{login}" IN DATABASE "postgres" RESET ALL',
    ]


def test_catalog_rows_are_grouped_by_role_and_database() -> None:
    rows = [
        (NAMES.login_role, 5, 0, None, ["statement_timeout=2s", "Search_Path=x"]),
        (NAMES.login_role, 5, 5, "postgres", ["work_mem=1GB"]),
        (NAMES.owner_role, -1, None, None, None),
    ]
    seen = role_settings.observe(rows)
    assert seen[NAMES.login_role].settings == {"statement_timeout": "2s", "search_path": "x"}
    assert seen[NAMES.login_role].per_database == {"postgres": {"work_mem": "1GB"}}
    assert seen[NAMES.owner_role] == role_settings.Observed(NAMES.owner_role, -1)
