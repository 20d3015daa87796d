"""Two operator processes without peering (standalone) reconcile the same new Tenants at
once: each Tenant still ends with one password, the one its Secret holds and its role
accepts (the Secret decides it with a create-only write, read under the tenant's lock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantdb.devenv import operator_process
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect, tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

TENANTS = 6
"""Enough new Tenants that both processes reach several of them at the same moment."""


@pytest.fixture
def second_operator(
    kubeconfig: Path,
    operator_url: str,
    operator: operator_process.OperatorProcess,
    tmp_path: Path,
) -> Iterator[operator_process.OperatorProcess]:
    """Another `tenantdb run`, standalone like the session's, on the same cluster and server."""
    process = operator_process.OperatorProcess(kubeconfig, operator_url, tmp_path / "second.log")
    process.start()
    yield process
    process.stop()


def test_two_standalone_operators_store_one_password_per_new_tenant(
    kubectl: Kubectl, second_operator: operator_process.OperatorProcess
) -> None:
    names = [f"race-{index}" for index in range(TENANTS)]
    kubectl.apply("\n---\n".join(tenant(name, isolation="schema") for name in names))
    for name in names:
        kubectl.wait(f"tenant/{name}", "condition=Ready", timeout=120)
    for name in names:
        credentials = kubectl.secret_data(f"{name}-credentials")
        with connect(credentials) as conn:
            row = conn.execute("SELECT current_user").fetchone()
        assert row is not None and row[0] == credentials["username"]
        assert credentials["password"] in credentials["uri"]
    log = second_operator.log_path.read_text()
    assert f"[{kubectl.namespace}/race-" in log, "the second process reconciled none of them"
