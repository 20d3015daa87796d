"""The operator's Prometheus endpoint reports what it did."""

from __future__ import annotations

import pytest

from tenantdb.devenv import operator_process
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually, scrape, tenant
from tests.e2e.test_migrations_rollout import migration, tenants, wait_phase

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


ROLLOUT_TENANTS = 4
SLOW_UP = "CREATE TABLE counted (id int); SELECT pg_sleep(0.5)"


def _sum(samples: dict[str, float], name: str) -> float:
    return sum(value for key, value in samples.items() if key.split("{")[0] == name)


def test_a_rollout_moves_the_gauges_counters_and_histograms(
    kubectl: Kubectl, operator: operator_process.OperatorProcess
) -> None:
    """Scraped while a Migration rolls out one tenant at a time: the applied count rises
    while it runs; a refused Tenant counts an error by reason; no series names a tenant."""
    names = [f"metered-{i}" for i in range(ROLLOUT_TENANTS)]
    tenants(kubectl, names)
    before = scrape(operator)
    ready = 'tenantdb_tenant_objects{isolation="schema",phase="Ready"}'
    assert before[ready] >= ROLLOUT_TENANTS
    body = migration("counted", 1, SLOW_UP, strategy={"maxParallel": 1})
    kubectl.apply(body)
    seen: list[float] = []

    def risen_while_running() -> bool:
        samples = scrape(operator)
        seen.append(samples['tenantdb_migration_tenants{state="applied"}'])
        return samples.get('tenantdb_migrations{phase="Running"}', 0) >= 1 and seen[-1] > seen[0]

    eventually(risen_while_running, timeout=60)
    wait_phase(kubectl, "counted", "Succeeded")
    kubectl.apply(tenant("metered-copy", domain="metered.example.com"))
    kubectl.wait("tenant/metered-copy", "condition=Ready")
    kubectl.apply(tenant("metered-clash", domain="metered.example.com"))
    kubectl.wait("tenant/metered-clash", "condition=Stalled")
    after = scrape(operator)
    error = 'tenantdb_reconcile_errors_total{kind="Tenant",reason="DomainConflict"}'
    assert after[error] >= before.get(error, 0) + 1
    applied = 'tenantdb_migration_tenants{state="applied"}'
    assert after[applied] >= before[applied] + ROLLOUT_TENANTS
    for histogram in (
        'tenantdb_reconcile_duration_seconds_count{kind="Tenant"}',
        'tenantdb_reconcile_duration_seconds_count{kind="Migration"}',
        "tenantdb_migration_rollout_seconds_count",
    ):
        assert after[histogram] > before.get(histogram, 0), histogram
    assert not any(name in key for key in after for name in ("metered", kubectl.namespace))
