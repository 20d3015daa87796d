"""A new Tenant catches up with every Migration, then runs its seeders, then is Ready."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
ROOT = Path(__file__).resolve().parents[2]


def sample_migrations() -> str:
    rendered = subprocess.run(
        [sys.executable, "-m", "tenantdb", "migrations", "render", str(ROOT / "migrations")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return rendered.stdout


def test_tenant_is_migrated_and_seeded_before_ready(kubectl: Kubectl) -> None:
    kubectl.apply(sample_migrations())
    kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: seeded\n"
        "spec:\n  seed:\n    profile: development\n    seeders: [sample_users]\n"
    )
    kubectl.wait("tenant/seeded", "condition=Ready", timeout=180)
    status = kubectl.get("tenant", "seeded")["status"]
    assert status["version"] == max(int(p.name[:4]) for p in (ROOT / "migrations").glob("*.sql"))
    assert status["seeded"] is True
    seeded = next(c for c in status["conditions"] if c["type"] == "Seeded")
    assert seeded["status"] == "True" and "sample_users" in seeded["message"]
    with connect(kubectl.secret_data("seeded-credentials")) as conn:
        users = conn.execute("SELECT count(*) FROM users").fetchone()
        roles = conn.execute("SELECT count(*) FROM roles").fetchone()
    assert users is not None and users[0] > 0
    assert roles is not None and roles[0] > 0  # a dependency of sample_users ran first


def test_an_unknown_seeder_is_reported_and_the_tenant_is_not_ready(kubectl: Kubectl) -> None:
    kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: misseeded\n"
        "spec:\n  seed:\n    seeders: [no_such_seeder]\n"
    )
    kubectl.wait(
        "tenant/misseeded", 'jsonpath={.status.conditions[?(@.type=="Seeded")].status}=False'
    )
    status = kubectl.get("tenant", "misseeded")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    seeded = next(c for c in status["conditions"] if c["type"] == "Seeded")
    assert ready["status"] == "False"
    assert "no_such_seeder" in seeded["message"]
