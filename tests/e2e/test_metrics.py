"""The operator's Prometheus endpoint reports what it did."""

from __future__ import annotations

import pytest

from tenantdb.devenv import operator_process
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import scrape, tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]


def test_reconciles_are_counted(
    kubectl: Kubectl, operator: operator_process.OperatorProcess
) -> None:
    before = scrape(operator).get('tenantdb_reconciles_total{kind="Tenant",outcome="ready"}', 0.0)
    kubectl.apply(tenant("measured"))
    kubectl.wait("tenant/measured", "condition=Ready")
    after = scrape(operator)
    assert after['tenantdb_reconciles_total{kind="Tenant",outcome="ready"}'] >= before + 1
    assert not any("password" in name for name in after)
