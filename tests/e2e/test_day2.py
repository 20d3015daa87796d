"""Usage, health, validation and reset through the API server and the operator process."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import psycopg
import pytest

from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect, create_as_owner, eventually, scrape, tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]


def status_of(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return kubectl.get("tenant", name).get("status") or {}  # type: ignore[no-any-return]


def healthy(status: dict[str, Any]) -> tuple[str, str] | None:
    for condition in status.get("conditions") or []:
        if condition["type"] == "Healthy":
            return condition["status"], condition["reason"]
    return None


def test_usage_and_health_follow_the_tenants_sessions(kubectl: Kubectl, operator: Any) -> None:
    kubectl.apply(tenant("busy-bee", plan="free"))  # 5 connections
    kubectl.wait("tenant/busy-bee", "condition=Ready")
    creds = kubectl.secret_data("busy-bee-credentials")
    eventually(lambda: healthy(status_of(kubectl, "busy-bee")) == ("True", "Healthy"))
    assert status_of(kubectl, "busy-bee")["usage"]["connectionLimit"] == 5
    with ExitStack() as held:
        for _ in range(4):
            held.enter_context(connect(creds))
        eventually(
            lambda: healthy(status_of(kubectl, "busy-bee")) == ("False", "ConnectionsNearLimit")
        )
        assert status_of(kubectl, "busy-bee")["usage"]["connections"] == 4
        assert scrape(operator)['tenantdb_tenants_near_connection_limit{plan="free"}'] >= 1
    eventually(lambda: healthy(status_of(kubectl, "busy-bee")) == ("True", "Healthy"))
    assert not any(name.startswith("tenantdb_tenant_bytes{") for name in scrape(operator))


def test_validation_and_reset_by_annotation(kubectl: Kubectl, admin: psycopg.Connection) -> None:
    kubectl.apply(tenant("tidy", deletionPolicy="Delete"))
    kubectl.wait("tenant/tidy", "condition=Ready")
    status = status_of(kubectl, "tidy")
    create_as_owner(admin, status, "CREATE TABLE parts (id int PRIMARY KEY, ref int)")
    create_as_owner(admin, status, "INSERT INTO parts VALUES (1, 1), (2, 9)")
    create_as_owner(
        admin,
        status,
        "ALTER TABLE parts ADD CONSTRAINT parts_ref FOREIGN KEY (ref) REFERENCES parts NOT VALID",
    )

    kubectl.run("annotate", "tenant", "tidy", "tenantdb.io/validate=first")
    kubectl.wait("tenant/tidy", "jsonpath={.status.validation.request}=first")
    validation = status_of(kubectl, "tidy")["validation"]
    assert validation["passed"] is False
    assert {f["kind"] for f in validation["findings"]} == {"NotValidConstraint", "UnexpectedTable"}

    kubectl.run("annotate", "tenant", "tidy", "tenantdb.io/reset=someone-else")
    kubectl.wait("tenant/tidy", "jsonpath={.status.reset.phase}=Refused")
    assert admin.execute(f'SELECT count(*) FROM "{status["schema"]}".parts').fetchone() == (2,)

    kubectl.run("annotate", "--overwrite", "tenant", "tidy", "tenantdb.io/reset=tidy")
    kubectl.wait("tenant/tidy", "jsonpath={.status.reset.phase}=Completed", timeout=120)
    reset = status_of(kubectl, "tidy")["reset"]
    assert "backup" not in reset  # the test operator runs in development: no Backup asked for
    assert reset["emptied"] == 1 and reset["request"] == "tidy"
    assert admin.execute(f'SELECT count(*) FROM "{status["schema"]}".parts').fetchone() == (0,)


def test_a_production_reset_from_the_cli_needs_a_completed_backup_of_that_tenant(
    kubectl: Kubectl,
    admin: psycopg.Connection,
    kubeconfig: Any,
    operator_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tenantdb import cli  # noqa: PLC0415

    for name in ("prod", "other"):
        kubectl.apply(tenant(name))
        kubectl.wait(f"tenant/{name}", "condition=Ready")
        create_as_owner(admin, status_of(kubectl, name), "CREATE TABLE notes (id int)")
        create_as_owner(admin, status_of(kubectl, name), "INSERT INTO notes VALUES (1), (2)")
    schema = status_of(kubectl, "prod")["schema"]
    for name, of in (("prod-1", "prod"), ("other-1", "other")):
        kubectl.apply(
            "apiVersion: tenantdb.io/v1alpha1\nkind: Backup\n"
            f"metadata: {{name: {name}}}\nspec: {{tenant: {of}}}\n"
        )
        kubectl.wait(f"backup/{name}", "jsonpath={.status.phase}=Completed", timeout=120)
    monkeypatch.setenv("DATABASE_URL", operator_url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("TENANTDB_ENVIRONMENT", "production")
    target = f"{kubectl.namespace}/prod"

    def reset(*extra: str) -> tuple[int, str]:
        code = cli.main(["reset", "--tenant", target, "--confirm", "prod", *extra])
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    code, out = reset()
    assert code != 0 and "backup" in out.lower(), out
    code, out = reset("--backup", "other-1")  # a Completed Backup, but of another tenant
    assert code != 0 and "not a Completed backup of this tenant" in out, out
    assert admin.execute(f'SELECT count(*) FROM "{schema}".notes').fetchone() == (2,)
    code, out = reset("--backup", "prod-1")
    assert code == 0, out
    assert admin.execute(f'SELECT count(*) FROM "{schema}".notes').fetchone() == (0,)
