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


def test_a_rollout_moves_the_gauges_counters_and_histograms(
    kubectl: Kubectl, operator: operator_process.OperatorProcess
) -> None:
    """Scraped while a Migration rolls out one tenant at a time: Running on the gauge and
    its applied tenants counted while it runs; a refused Tenant counts an error by reason;
    the durations are observed; no series names a tenant."""
    names = [f"metered-{i}" for i in range(ROLLOUT_TENANTS)]
    tenants(kubectl, names)
    before = scrape(operator)
    ready = 'tenantdb_tenant_objects{isolation="schema",phase="Ready"}'
    applied = 'tenantdb_migration_tenants{state="applied"}'
    assert before[ready] >= ROLLOUT_TENANTS
    body = migration("counted", 1, SLOW_UP, strategy={"maxParallel": 1})
    kubectl.apply(body)

    def running_and_counted() -> bool:
        """Running on the gauge while this rollout is part-way (other tests' namespaces may
        be going away meanwhile, so the applied sum is compared with this rollout's own)."""
        samples = scrape(operator)
        own = (kubectl.get("migration", "counted").get("status") or {}).get("tenants") or {}
        part_way = 0 < int(own.get("applied") or 0) < ROLLOUT_TENANTS
        running = samples.get('tenantdb_migrations{phase="Running"}', 0) >= 1
        return running and part_way and samples[applied] >= int(own["applied"])

    eventually(running_and_counted, timeout=60)
    wait_phase(kubectl, "counted", "Succeeded")
    kubectl.apply(tenant("metered-copy", domain="metered.example.com"))
    kubectl.wait("tenant/metered-copy", "condition=Ready")
    kubectl.apply(tenant("metered-clash", domain="metered.example.com"))
    kubectl.wait("tenant/metered-clash", "condition=Stalled")
    after = scrape(operator)
    error = 'tenantdb_reconcile_errors_total{kind="Tenant",reason="DomainConflict"}'
    assert after[error] >= before.get(error, 0) + 1
    assert after[applied] >= ROLLOUT_TENANTS
    for histogram in (
        'tenantdb_reconcile_duration_seconds_count{kind="Tenant"}',
        'tenantdb_reconcile_duration_seconds_count{kind="Migration"}',
        "tenantdb_migration_rollout_seconds_count",
    ):
        assert after[histogram] > before.get(histogram, 0), histogram
    assert not any(name in key for key in after for name in ("metered", kubectl.namespace))
