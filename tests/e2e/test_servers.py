"""Tenants on a second PostgreSQL server: a DatabaseServer reached and prepared, Tenants
placed on it by ``serverRef`` and by ``serverSelector``, refused (with nothing created)
when the server is unknown or full, and a server that still hosts tenants kept when
deleted. Two real servers: the session's and one started here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.devenv import operator_process, postgres, processes
from tests.e2e.databaseservers import OWN_NAMESPACE, declared
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import Forwarder, connect, eventually, scrape

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]


@pytest.fixture
def database_server(
    kubeconfig: Path,
    operator: operator_process.OperatorProcess,
    second_postgres: postgres.EmbeddedPostgres,
) -> Iterator[tuple[str, str]]:
    """A Ready DatabaseServer on the second server: its name and its label's value."""
    zone = f"zone-{uuid.uuid4().hex[:6]}"
    with declared(kubeconfig, second_postgres.operator_url, {"zone": zone}) as name:
        yield name, zone


def apply_tenant(kubectl: Kubectl, name: str, **spec: object) -> None:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"isolation": "schema", **spec},
    }
    kubectl.apply(json.dumps(body))


def apply_migration(kubectl: Kubectl, name: str, up: str) -> None:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {"version": 1, "up": up},
    }
    kubectl.apply(json.dumps(body))


def schemas_on(url: str, schema: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
        found = row.fetchone()
    return int(found[0]) if found else 0


def ready_reason(kubectl: Kubectl, name: str) -> str:
    conditions = (kubectl.get("tenant", name).get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), "")


def test_a_tenant_named_onto_a_second_server_lives_there_only(
    kubectl: Kubectl,
    database_server: tuple[str, str],
    second_postgres: postgres.EmbeddedPostgres,
    database_url: str,
    operator: operator_process.OperatorProcess,
) -> None:
    name, _ = database_server
    assert scrape(operator)[f'tenantdb_database_server_reachable{{server="{name}"}}'] == 1
    apply_tenant(kubectl, "far", serverRef={"name": name})
    kubectl.wait("tenant/far", "condition=Ready", timeout=120)
    status = kubectl.get("tenant", "far")["status"]
    assert status["server"] == name
    assert schemas_on(second_postgres.superuser_url(), status["schema"]) == 1
    assert schemas_on(database_url, status["schema"]) == 0
    credentials = kubectl.secret_data(status["credentialsSecret"])
    assert credentials["port"] == str(second_postgres.port)
    with connect(credentials) as conn:
        row = conn.execute("SELECT current_user, inet_server_port()").fetchone()
    assert row == (credentials["username"], second_postgres.port)


def test_a_selector_places_the_tenant_on_the_matching_server(
    kubectl: Kubectl, database_server: tuple[str, str]
) -> None:
    name, zone = database_server
    apply_tenant(kubectl, "chosen", serverSelector={"matchLabels": {"zone": zone}})
    kubectl.wait("tenant/chosen", "condition=Ready", timeout=120)
    assert kubectl.get("tenant", "chosen")["status"]["server"] == name
    apply_tenant(kubectl, "nowhere", serverSelector={"matchLabels": {"zone": "none-such"}})
    eventually(lambda: ready_reason(kubectl, "nowhere") == "ServerNotFound", timeout=60)
    assert "server" not in (kubectl.get("tenant", "nowhere").get("status") or {})


def test_unknown_and_full_servers_refuse_the_tenant_and_create_nothing(
    kubectl: Kubectl,
    database_server: tuple[str, str],
    second_postgres: postgres.EmbeddedPostgres,
    database_url: str,
) -> None:
    name, _ = database_server
    apply_tenant(kubectl, "lost", serverRef={"name": "no-such-server"})
    eventually(lambda: ready_reason(kubectl, "lost") == "ServerUnavailable", timeout=60)
    lost = kubectl.get("tenant", "lost")
    assert lost["status"]["phase"] == "Pending" and "server" not in lost["status"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in ("tenants", "placements"):
            query = f"SELECT count(*) FROM tenantdb.{table} WHERE namespace = %s"
            assert conn.execute(query, (kubectl.namespace,)).fetchone() == (0,), table
    assert kubectl.run("get", "secret", "lost-credentials", check=False).returncode != 0
    kubectl.run("delete", "tenant", "lost", "--timeout=60s")  # and it can be deleted
    system = Kubectl(kubectl.kubeconfig, OWN_NAMESPACE)
    patch = {"spec": {"capacity": {"tenants": 0}}}
    system.run("patch", "databaseserver", name, "--type=merge", "-p", json.dumps(patch))
    apply_tenant(kubectl, "crowded", serverRef={"name": name})
    eventually(lambda: ready_reason(kubectl, "crowded") == "ServerFull", timeout=60)
    with psycopg.connect(second_postgres.superuser_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM tenantdb.tenants WHERE namespace = %s", (kubectl.namespace,)
        ).fetchone()
    assert rows == (0,)


def test_a_server_that_hosts_tenants_is_kept_when_deleted(
    kubectl: Kubectl, database_server: tuple[str, str]
) -> None:
    name, _ = database_server
    apply_tenant(kubectl, "resident", serverRef={"name": name})
    kubectl.wait("tenant/resident", "condition=Ready", timeout=120)
    system = Kubectl(kubectl.kubeconfig, OWN_NAMESPACE)
    system.run("delete", "databaseserver", name, "--wait=false")

    def refused() -> bool:
        conditions = (system.get("databaseserver", name).get("status") or {}).get("conditions")
        ready = next((c for c in conditions or [] if c["type"] == "Ready"), {})
        return ready.get("reason") == "TenantsRemain" and "1 tenant(s)" in ready.get("message", "")

    eventually(refused, timeout=60)
    kubectl.run("delete", "tenant", "resident", "--timeout=120s")
    system.run("wait", "--for=delete", f"databaseserver/{name}", "--timeout=60s")


def test_a_migration_reaches_the_tenants_of_both_servers_and_deletion_cleans_each(
    kubectl: Kubectl,
    database_server: tuple[str, str],
    second_postgres: postgres.EmbeddedPostgres,
    database_url: str,
    operator: operator_process.OperatorProcess,
) -> None:
    name, _ = database_server
    apply_tenant(kubectl, "near")
    apply_tenant(kubectl, "away", serverRef={"name": name})
    for tenant in ("near", "away"):
        kubectl.wait(f"tenant/{tenant}", "condition=Ready", timeout=120)
    apply_migration(kubectl, "both", "CREATE TABLE everywhere (id int)")
    kubectl.wait("migration/both", "jsonpath={.status.phase}=Succeeded", timeout=120)
    counts = kubectl.get("migration", "both")["status"]["tenants"]
    assert (counts["total"], counts["applied"]) == (2, 2)
    near, away = (kubectl.get("tenant", t)["status"] for t in ("near", "away"))
    assert (near["server"], away["server"]) == ("default", name)
    for url, schema in (
        (database_url, near["schema"]),
        (second_postgres.superuser_url(), away["schema"]),
    ):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".everywhere',))
            assert row.fetchone() == (True,), schema
    kubectl.wait("tenant/away", "jsonpath={.status.version}=1", timeout=60)
    verified = 'jsonpath={.status.conditions[?(@.type=="IsolationVerified")].status}=True'
    kubectl.wait("tenant/away", verified, timeout=60)
    restarted_without_a_flicker(kubectl, operator)

    body = {"spec": {"deletionPolicy": "Delete"}}
    kubectl.run("patch", "tenant", "away", "--type=merge", "-p", json.dumps(body))
    kubectl.run("delete", "tenant", "away", "--timeout=120s")
    assert schemas_on(second_postgres.superuser_url(), away["schema"]) == 0


def test_a_server_that_is_down_holds_up_only_its_own_tenants(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    with postgres.EmbeddedPostgres(tmp_path / "postgres") as down:
        link = Forwarder(processes.free_port(), (processes.LOOPBACK, down.port))
        url = down.operator_url.replace(f":{down.port}/", f":{link.port}/")
        try:
            with declared(kubectl.kubeconfig, url) as name:
                outage(kubectl, name, down, link)
        finally:
            link.close()


def outage(kubectl: Kubectl, name: str, down: postgres.EmbeddedPostgres, link: Forwarder) -> None:
    apply_tenant(kubectl, "stranded", serverRef={"name": name}, deletionPolicy="Delete")
    apply_tenant(kubectl, "fine")
    for tenant in ("stranded", "fine"):
        kubectl.wait(f"tenant/{tenant}", "condition=Ready", timeout=120)
    down.stop()
    apply_migration(kubectl, "during-outage", "CREATE TABLE during_outage (id int)")

    def waits_for_the_server() -> bool:
        status = kubectl.get("migration", "during-outage").get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        applied = (status.get("tenants") or {}).get("applied")
        return ready.get("reason") == "ServerUnavailable" and applied == 1

    eventually(waits_for_the_server, timeout=120)
    for tenant in ("stranded", "fine"):
        patch = {"spec": {"displayName": f"{tenant} during the outage"}}
        kubectl.run("patch", "tenant", tenant, "--type=merge", "-p", json.dumps(patch))
    generation = kubectl.get("tenant", "fine")["metadata"]["generation"]
    kubectl.wait("tenant/fine", f"jsonpath={{.status.observedGeneration}}={generation}")
    assert ready_reason(kubectl, "fine") == "Provisioned"
    eventually(lambda: ready_reason(kubectl, "stranded") == "DatabaseUnavailable", timeout=60)

    down.start()
    link.retarget((processes.LOOPBACK, down.port))
    kubectl.wait("migration/during-outage", "jsonpath={.status.phase}=Succeeded", timeout=120)
    assert kubectl.get("migration", "during-outage")["status"]["tenants"]["applied"] == 2
    kubectl.wait("tenant/stranded", "condition=Ready", timeout=120)
    kubectl.run("delete", "tenant", "stranded", "--timeout=120s")


def restarted_without_a_flicker(
    kubectl: Kubectl, operator: operator_process.OperatorProcess
) -> None:
    """Across an operator restart (its servers reached anew), the finished Migration keeps
    its times and the second server's tenant never leaves Ready."""
    migration = kubectl.get("migration", "both")["status"]
    ready = next(
        c for c in kubectl.get("tenant", "away")["status"]["conditions"] if c["type"] == "Ready"
    )
    operator.stop()
    operator.start()
    patch = {"spec": {"displayName": "after the restart"}}
    kubectl.run("patch", "tenant", "away", "--type=merge", "-p", json.dumps(patch))
    generation = kubectl.get("tenant", "away")["metadata"]["generation"]
    kubectl.wait(
        "tenant/away", f"jsonpath={{.status.observedGeneration}}={generation}", timeout=120
    )
    after = kubectl.get("tenant", "away")["status"]["conditions"]
    assert (
        next(c for c in after if c["type"] == "Ready")["lastTransitionTime"]
        == ready["lastTransitionTime"]
    )
    now = kubectl.get("migration", "both")["status"]
    assert now["finishedAt"] and now["phase"] == "Succeeded"
    assert (now.get("startedAt"), now["finishedAt"]) == (
        migration.get("startedAt"),
        migration["finishedAt"],
    )
