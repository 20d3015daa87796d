"""Migrations rolled out by the operator process, driven with kubectl like a user would.

Real API server, real PostgreSQL, the operator as its own process. Each
test works in a fresh namespace; the ledger is read straight from
PostgreSQL to check what ran where.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import psycopg
import pytest
import yaml

from tenantdb.core import naming
from tests.e2e import support
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
TIMEOUT = 90.0
"""Seconds to wait for the operator's rollouts, longer than support.eventually's default."""


def tenants(kubectl: Kubectl, names: Sequence[str], labels: dict[str, str] | None = None) -> None:
    """Create Tenants and wait until all of them are Ready."""
    docs = [
        {
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"isolation": "schema", "deletionPolicy": "Delete"},
        }
        for name in names
    ]
    kubectl.apply(yaml.safe_dump_all(docs))
    for name in names:
        kubectl.wait(f"tenant/{name}", "condition=Ready", timeout=120)


def migration(name: str, version: int, up: str, **spec: object) -> str:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {"version": version, "up": up, **spec},
    }
    return yaml.safe_dump(body)


def wait_phase(kubectl: Kubectl, name: str, phase: str, timeout: int = 120) -> dict[str, object]:
    kubectl.wait(f"migration/{name}", f"jsonpath={{.status.phase}}={phase}", timeout=timeout)
    status: dict[str, object] = kubectl.get("migration", name)["status"]
    return status


def ready_of(kubectl: Kubectl, name: str) -> dict[str, str]:
    status = kubectl.get("migration", name).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return ready[0] if ready else {}


def ledger(admin: psycopg.Connection, namespace: str, version: int) -> dict[str, str]:
    """Ledger state by tenant name for one version."""
    rows = admin.execute(
        "SELECT tenant_name, state FROM tenantdb.migration_ledger"
        " WHERE namespace = %s AND version = %s",
        (namespace, version),
    ).fetchall()
    return dict(rows)  # type: ignore[arg-type]


def schema_of(kubectl: Kubectl, tenant: str) -> str:
    return str(kubectl.get("tenant", tenant)["status"]["schema"])


def plant(admin: psycopg.Connection, kubectl: Kubectl, tenant: str, table: str) -> None:
    """Make ``CREATE TABLE <table>`` fail on this tenant only."""
    admin.execute(f'CREATE TABLE "{schema_of(kubectl, tenant)}"."{table}" (id int)')


def test_versions_apply_in_order_and_kubectl_get_is_the_progress_bar(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    names = ["ada", "bob", "cyd"]
    tenants(kubectl, names)
    # Version 2 needs version 1's table; version 1 waits for approval.
    kubectl.apply(
        migration("m1", 1, "CREATE TABLE leads (id bigint PRIMARY KEY)", approved=False)
        + "---\n"
        + migration("m2", 2, "ALTER TABLE leads ADD COLUMN score int NOT NULL DEFAULT 0")
    )
    waiting = wait_phase(kubectl, "m2", "Running")
    eventually(
        lambda: "wait for version(s) 1" in ready_of(kubectl, "m2")["message"], timeout=TIMEOUT
    )
    assert waiting["tenants"]["pending"] == 3  # type: ignore[index]
    assert ledger(admin, kubectl.namespace, 2) == {}
    kubectl.run("patch", "migration", "m1", "--type=merge", "-p", '{"spec":{"approved":true}}')
    first = wait_phase(kubectl, "m1", "Succeeded")
    second = wait_phase(kubectl, "m2", "Succeeded")
    assert first["tenants"] == {"total": 3, "applied": 3, "pending": 0, "failed": 0}
    assert second["tenants"] == first["tenants"]
    ready = ready_of(kubectl, "m2")
    assert (ready["status"], ready["reason"]) == ("True", "Applied")
    assert second["checksum"] and second["startedAt"] and second["finishedAt"]
    order = admin.execute(
        "SELECT bool_and(b.applied_at >= a.applied_at) FROM tenantdb.migration_ledger a"
        " JOIN tenantdb.migration_ledger b ON a.tenant_uid = b.tenant_uid"
        " WHERE a.namespace = %s AND a.version = 1 AND b.version = 2",
        (kubectl.namespace,),
    ).fetchone()
    assert order == (True,)
    table = kubectl.run("get", "migrations").stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "PHASE", "APPLIED", "TOTAL", "FAILED", "AGE"]
    assert table[1].split()[:6] == ["m1", "1", "Succeeded", "3", "3", "0"]


def test_selector_targets_only_matching_tenants(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    tenants(kubectl, ["gold-a", "gold-b"], {"tier": "gold"})
    tenants(kubectl, ["free-a"], {"tier": "free"})
    selector = {"matchLabels": {"tier": "gold"}}
    kubectl.apply(migration("gold", 1, "CREATE TABLE perks (id int)", tenantSelector=selector))
    status = wait_phase(kubectl, "gold", "Succeeded")
    assert status["tenants"] == {"total": 2, "applied": 2, "pending": 0, "failed": 0}
    assert ledger(admin, kubectl.namespace, 1) == {"gold-a": "applied", "gold-b": "applied"}
    # A tenant relabelled into the selection receives it too.
    kubectl.run("label", "tenant", "free-a", "tier=gold", "--overwrite")
    eventually(
        lambda: ledger(admin, kubectl.namespace, 1).get("free-a") == "applied", timeout=TIMEOUT
    )


def test_canaries_go_first_and_a_failed_canary_stops_the_rest(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    names = ["c1", "c2", "c3", "c4", "c5"]
    tenants(kubectl, names)
    canary = {"canary": {"tenants": ["c4"], "count": 1}, "maxParallel": 4}
    kubectl.apply(migration("first", 1, "CREATE TABLE a (id int)", strategy=canary))
    wait_phase(kubectl, "first", "Succeeded")
    started = dict(
        admin.execute(
            "SELECT tenant_name, applied_at FROM tenantdb.migration_ledger"
            " WHERE namespace = %s AND version = 1",
            (kubectl.namespace,),
        ).fetchall()
    )
    canaries = {"c4", "c1"}  # named, then the first by name
    assert max(started[n] for n in canaries) <= min(started[n] for n in set(names) - canaries)

    plant(admin, kubectl, "c4", "b")
    kubectl.apply(migration("second", 2, "CREATE TABLE b (id int)", strategy=canary))
    status = wait_phase(kubectl, "second", "Halted")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[attr-defined]
    assert ready["reason"] == "CanaryFailed" and "c4" in ready["message"]
    assert set(ledger(admin, kubectl.namespace, 2)) <= canaries  # nobody else was touched


def test_halt_stops_at_the_first_failure(kubectl: Kubectl, admin: psycopg.Connection) -> None:
    names = ["h1", "h2", "h3", "h4", "h5"]
    tenants(kubectl, names)
    plant(admin, kubectl, "h2", "t")
    strategy = {"maxParallel": 1, "failurePolicy": "Halt"}
    kubectl.apply(migration("halting", 1, "CREATE TABLE t (id int)", strategy=strategy))
    status = wait_phase(kubectl, "halting", "Halted")
    assert status["tenants"] == {"total": 5, "applied": 1, "pending": 3, "failed": 1}
    assert ledger(admin, kubectl.namespace, 1) == {"h1": "applied", "h2": "failed"}
    assert any(
        e["reason"] == "RolloutHalted" and e["type"] == "Warning" for e in kubectl.events("halting")
    )


def test_continue_goes_on_until_max_failures(kubectl: Kubectl, admin: psycopg.Connection) -> None:
    names = ["k1", "k2", "k3", "k4", "k5", "k6"]
    tenants(kubectl, names)
    for name in ("k2", "k4", "k5"):
        plant(admin, kubectl, name, "t")
    strategy = {"maxParallel": 1, "failurePolicy": "Continue", "maxFailures": 2}
    kubectl.apply(migration("going", 1, "CREATE TABLE t (id int)", strategy=strategy))
    status = wait_phase(kubectl, "going", "Halted")
    assert status["tenants"] == {"total": 6, "applied": 2, "pending": 1, "failed": 3}
    assert "k6" not in ledger(admin, kubectl.namespace, 1)
    failures = {f["tenant"]: f["error"] for f in status["failures"]}  # type: ignore[attr-defined]
    assert set(failures) == {"k2", "k4", "k5"}
    assert 'relation "t" already exists' in failures["k2"]
    # Raising the limit (a spec change) retries the failed tenants and goes on.
    kubectl.run(
        "patch",
        "migration",
        "going",
        "--type=merge",
        "-p",
        '{"spec":{"strategy":{"maxFailures":0}}}',
    )
    status = wait_phase(kubectl, "going", "Failed")
    assert status["tenants"] == {"total": 6, "applied": 3, "pending": 0, "failed": 3}


def test_bad_sql_reports_the_database_error_and_position(kubectl: Kubectl) -> None:
    tenants(kubectl, ["typo"])
    kubectl.apply(migration("typo", 1, "CREATE TABLE ok (id int);\nSELEC 1;"))
    status = wait_phase(kubectl, "typo", "Halted")
    (failure,) = status["failures"]  # type: ignore[misc]
    assert failure["tenant"] == "typo"
    assert 'syntax error at or near "SELEC"' in failure["error"]
    assert "SQLSTATE 42601" in failure["error"] and "(line 2, column 1)" in failure["error"]


def test_dry_run_reports_per_tenant_and_leaves_no_trace(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    tenants(kubectl, ["dry-a", "dry-b"])
    plant(admin, kubectl, "dry-b", "t")
    kubectl.apply(migration("dry", 1, "CREATE TABLE t (id int)", dryRun=True))
    status = wait_phase(kubectl, "dry", "Failed")
    assert status["tenants"] == {"total": 2, "applied": 1, "pending": 0, "failed": 1}
    assert [f["tenant"] for f in status["failures"]] == ["dry-b"]  # type: ignore[attr-defined]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[attr-defined]
    assert ready["reason"] == "DryRunFailed"
    assert ledger(admin, kubectl.namespace, 1) == {}
    created = admin.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema_of(kubectl, "dry-a"),)
    ).fetchone()
    assert created == (0,)


def test_approval_gate_holds_the_rollout_until_approved(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    tenants(kubectl, ["gate-a", "gate-b"])
    kubectl.apply(migration("gated", 1, "CREATE TABLE t (id int)", approved=False))
    status = wait_phase(kubectl, "gated", "AwaitingApproval")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[attr-defined]
    assert ready["reason"] == "AwaitingApproval"
    assert "on 2 of 2 tenant(s)" in ready["message"]
    assert status["tenants"]["pending"] == 2  # type: ignore[index]
    time.sleep(1)
    assert ledger(admin, kubectl.namespace, 1) == {}
    kubectl.run("patch", "migration", "gated", "--type=merge", "-p", '{"spec":{"approved":true}}')
    wait_phase(kubectl, "gated", "Succeeded")
    assert ledger(admin, kubectl.namespace, 1) == {"gate-a": "applied", "gate-b": "applied"}


def test_shared_migration_runs_once_and_shared_tables_get_row_level_security(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    suffix = uuid.uuid4().hex[:8]
    version = 10**12 + int(suffix, 16)
    up = (
        f"CREATE TABLE notes_{suffix} (tenant_id uuid NOT NULL, id bigint, body text);\n"
        f"CREATE TABLE loose_{suffix} (id bigint)"
    )
    kubectl.apply(migration("shared", version, up, scope="shared"))
    _check_shared(kubectl, admin, suffix)


def _check_shared(kubectl: Kubectl, admin: psycopg.Connection, suffix: str) -> None:
    space = naming.shared_names(kubectl.namespace)  # the namespace's own shared space
    status = wait_phase(kubectl, "shared", "Succeeded")
    assert status["tenants"] == {"total": 1, "applied": 1, "pending": 0, "failed": 0}
    owner, rls, forced = admin.execute(
        "SELECT pg_get_userbyid(relowner), relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE oid = to_regclass(%s)",
        (f"{space.schema}.notes_{suffix}",),
    ).fetchone()  # type: ignore[misc]
    assert (owner, rls, forced) == (space.owner_role, True, True)
    eventually(
        lambda: any(
            e["reason"] == "SharedTablesSecured" and f"loose_{suffix}" in e["message"]
            for e in kubectl.events("shared")
        ),
        timeout=TIMEOUT,
    )


def test_timeouts_reach_the_tenant_and_no_timeout_is_capped_by_the_operator(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    """The session's operator runs with TENANTDB_MAX_STATEMENT_TIMEOUT=1h (tests/conftest.py)."""
    tenants(kubectl, ["capped"])
    seen = (
        "CREATE TABLE seen AS SELECT current_setting('statement_timeout') AS statement_timeout,"
        " current_setting('lock_timeout') AS lock_timeout"
    )
    kubectl.apply(migration("unbounded", 1, seen, statementTimeout="0s", lockTimeout="250ms"))
    wait_phase(kubectl, "unbounded", "Succeeded")
    table = f'"{schema_of(kubectl, "capped")}".seen'
    assert admin.execute(f"SELECT * FROM {table}").fetchone() == ("1h", "250ms")
    kubectl.apply(migration("bounded", 2, f"DROP TABLE {table}; {seen}", statementTimeout="90s"))
    wait_phase(kubectl, "bounded", "Succeeded")
    assert admin.execute(f"SELECT * FROM {table}").fetchone() == ("90s", "5s")


def test_a_tenant_holding_locks_on_its_own_tables_is_reported_retrying_and_delays_no_other(
    kubectl: Kubectl,
) -> None:
    """The application of a tenant can hold locks on its own tables; that tenant's
    Migration waits a bounded time, says why in status, and the others go on."""
    tenants(kubectl, ["holder", "bystander"])
    kubectl.apply(migration("notes", 1, "CREATE TABLE notes (id int)"))
    wait_phase(kubectl, "notes", "Succeeded")
    with support.connect(kubectl.secret_data("holder-credentials")) as held:
        held.execute("BEGIN")
        held.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        kubectl.apply(
            migration("note-body", 2, "ALTER TABLE notes ADD COLUMN body text", lockTimeout="200ms")
        )

        def retrying() -> list[dict[str, str]]:
            found = kubectl.get("migration", "note-body").get("status") or {}
            return list(found.get("retrying") or [])

        eventually(lambda: [r["tenant"] for r in retrying()] == ["holder"], timeout=TIMEOUT)
        status = kubectl.get("migration", "note-body")["status"]
        assert "lock timeout" in status["retrying"][0]["reason"]
        assert status["tenants"]["applied"] == 1  # the bystander did not wait
        held.execute("ROLLBACK")
    status = wait_phase(kubectl, "note-body", "Succeeded")
    assert status.get("retrying", []) == []
    assert status["tenants"] == {"total": 2, "applied": 2, "pending": 0, "failed": 0}
