"""Attacks on the plan's limits: a tenant lifts its own defaults, the operator puts them back.

A tenant on the test operator's ``brief`` plan (statement_timeout 2s, see
tests/conftest.py) uses its own credentials to change its role's settings
(the isolation check finds and repairs them) and to run statements past the
plan's limit (the watchdog cancels them, and terminates the session of one
that ignores its cancel).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from tenantdb.devenv import operator_process
from tests.conftest import BRIEF_PLAN
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually, scrape
from tests.security.conftest import Tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

REPAIR_TIMEOUT = 90.0
"""The verify timer ticks every 10 s and the test operator verifies each tenant every 5 s."""
IGNORES_CANCEL = """
DO $$
BEGIN
  FOR i IN 1..5 LOOP
    BEGIN
      PERFORM pg_sleep(30);
    EXCEPTION WHEN query_canceled THEN
      NULL;  -- swallow the cancel and carry on
    END;
  END LOOP;
END
$$
"""


@dataclass(frozen=True)
class Limited:
    """The tenant on the brief plan and kubectl in its namespace."""

    kubectl: Kubectl
    tenant: Tenant

    @property
    def role(self) -> str:
        return self.tenant.status["role"]

    @property
    def provisioned(self) -> dict[str, list[str]]:
        """pg_db_role_setting of the login role exactly as provisioning sets it."""
        return {
            "": sorted(
                [
                    f"search_path={self.tenant.status['schema']}",
                    f"statement_timeout={BRIEF_PLAN['statement_timeout']}",
                ]
            )
        }

    def event_names(self) -> set[str]:
        return {e["metadata"]["name"] for e in self.kubectl.events(self.tenant.name)}

    def new_events(self, before: set[str], reason: str) -> list[dict[str, str]]:
        return [
            {"type": e["type"], "message": e["message"]}
            for e in self.kubectl.events(self.tenant.name)
            if e["reason"] == reason and e["metadata"]["name"] not in before
        ]


@pytest.fixture(scope="module")
def limited(kubeconfig: Path, operator: operator_process.OperatorProcess) -> Iterator[Limited]:
    kubectl = Kubectl(kubeconfig, f"plan-{uuid.uuid4().hex[:8]}")
    kubectl.run("create", "namespace", kubectl.namespace)
    kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: limited\n"
        "spec:\n  isolation: schema\n  plan: brief\n  deletionPolicy: Delete\n"
    )
    kubectl.wait("tenant/limited", "condition=Ready")
    obj = kubectl.get("tenant", "limited")
    tenant = Tenant(
        "limited",
        obj["metadata"]["uid"],
        obj["status"],
        kubectl.secret_data("limited-credentials"),
    )
    yield Limited(kubectl, tenant)
    kubectl.run("delete", "namespace", kubectl.namespace, "--wait=false", check=False)


def role_settings(admin: psycopg.Connection, role: str) -> dict[str, list[str]]:
    """pg_db_role_setting of one role: '' for role-wide, else the database's name."""
    rows = admin.execute(
        "SELECT coalesce(d.datname, ''), s.setconfig FROM pg_db_role_setting s"
        " JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE r.rolname = %s",
        (role,),
    ).fetchall()
    return {database: sorted(config) for database, config in rows}


def show(limited: Limited, setting: str) -> str:
    """A setting as a new session of the tenant starts with it."""
    with limited.tenant.connect() as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


def attack_role_settings(
    limited: Limited, admin: psycopg.Connection, statement: str, reported: str
) -> None:
    """The tenant runs ``statement``; the check must report ``reported`` and undo it."""
    assert role_settings(admin, limited.role) == limited.provisioned
    before = limited.event_names()
    with limited.tenant.connect(autocommit=True) as conn:
        conn.execute(statement)
    assert role_settings(admin, limited.role) != limited.provisioned  # the attack landed

    def repaired_and_reported() -> bool:
        drift = limited.new_events(before, "IsolationDrift")
        return role_settings(admin, limited.role) == limited.provisioned and any(
            reported in e["message"] for e in drift
        )

    eventually(repaired_and_reported, timeout=REPAIR_TIMEOUT)


def test_alter_role_self_statement_timeout_zero_is_restored(
    limited: Limited, admin: psycopg.Connection
) -> None:
    attack_role_settings(
        limited,
        admin,
        "ALTER ROLE CURRENT_USER SET statement_timeout = 0",
        f"sets statement_timeout to 0, not {BRIEF_PLAN['statement_timeout']}",
    )
    assert show(limited, "statement_timeout") == BRIEF_PLAN["statement_timeout"]


def test_alter_role_self_work_mem_is_removed(limited: Limited, admin: psycopg.Connection) -> None:
    attack_role_settings(
        limited,
        admin,
        "ALTER ROLE CURRENT_USER SET work_mem = '2GB'",
        "sets work_mem, which the operator does not",
    )
    assert show(limited, "work_mem") != "2GB"


def test_alter_role_self_search_path_to_another_schema_is_restored(
    limited: Limited, admin: psycopg.Connection
) -> None:
    attack_role_settings(
        limited,
        admin,
        "ALTER ROLE CURRENT_USER SET search_path = public, pg_temp",
        "sets search_path to public, pg_temp",
    )
    assert show(limited, "search_path") == limited.tenant.status["schema"]


def test_alter_role_self_in_database_settings_are_removed(
    limited: Limited, admin: psycopg.Connection
) -> None:
    database = limited.tenant.status["database"]
    attack_role_settings(
        limited,
        admin,
        f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" SET statement_timeout = 0',
        f"has settings in database {database}: statement_timeout",
    )
    assert show(limited, "statement_timeout") == BRIEF_PLAN["statement_timeout"]


def test_connection_limit_raised_by_hand_is_restored(
    limited: Limited, admin: psycopg.Connection
) -> None:
    """A tenant cannot change its own limit (no CREATEROLE); an administrator might."""
    with (
        limited.tenant.connect(autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute("ALTER ROLE CURRENT_USER CONNECTION LIMIT 500")
    before = limited.event_names()
    admin.execute(f'ALTER ROLE "{limited.role}" CONNECTION LIMIT 500')

    def restored() -> bool:
        row = admin.execute(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (limited.role,)
        ).fetchone()
        drift = limited.new_events(before, "IsolationDrift")
        return row == (BRIEF_PLAN["connection_limit"],) and any(
            "CONNECTION LIMIT 500" in e["message"] for e in drift
        )

    eventually(restored, timeout=REPAIR_TIMEOUT)


def actions(operator: operator_process.OperatorProcess, action: str) -> float:
    return scrape(operator).get(f'tenantdb_watchdog_actions_total{{action="{action}"}}', 0.0)


def test_statement_timeout_zero_in_the_session_is_cancelled_by_the_watchdog(
    limited: Limited, operator: operator_process.OperatorProcess
) -> None:
    before_events = limited.event_names()
    cancels = actions(operator, "cancel")
    with limited.tenant.connect(autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        with pytest.raises(errors.QueryCanceled) as caught:
            conn.execute("SELECT pg_sleep(120)")
        assert conn.execute("SELECT 1").fetchone() == (1,)  # cancelled, not disconnected
    assert "user request" in str(caught.value)  # pg_cancel_backend, not the server's own timeout
    eventually(lambda: actions(operator, "cancel") >= cancels + 1)
    eventually(lambda: bool(limited.new_events(before_events, "StatementCancelled")))
    event = limited.new_events(before_events, "StatementCancelled")[0]
    assert event["type"] == "Warning"
    assert f"statement_timeout of {BRIEF_PLAN['statement_timeout']}" in event["message"]
    assert "pg_sleep" not in event["message"]


def test_statement_ignoring_its_cancel_has_its_session_terminated(
    limited: Limited, operator: operator_process.OperatorProcess
) -> None:
    before_events = limited.event_names()
    terminations = actions(operator, "terminate")
    with limited.tenant.connect(autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        with pytest.raises(errors.AdminShutdown):
            conn.execute(IGNORES_CANCEL)
    eventually(lambda: actions(operator, "terminate") >= terminations + 1)
    eventually(lambda: bool(limited.new_events(before_events, "SessionTerminated")))
    cancelled = limited.new_events(before_events, "StatementCancelled")
    terminated = limited.new_events(before_events, "SessionTerminated")[0]
    assert cancelled, "the watchdog cancels before it terminates"
    assert terminated["type"] == "Warning" and "terminated" in terminated["message"]
    assert "pg_sleep" not in terminated["message"] and "query_canceled" not in terminated["message"]
