"""The census counts objects by bounded labels and forgets deleted ones."""

from __future__ import annotations

from typing import Any

from tenantdb.controllers import census


def _tenant(uid: str, phase: str | None, isolation: str = "schema") -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"uid": uid}, "spec": {"isolation": isolation}}
    if phase:
        body["status"] = {"phase": phase}
    return body


def _samples(counted: census.Census) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in counted.collect()
        for sample in family.samples
    }


def test_tenants_by_phase_and_isolation() -> None:
    counted = census.Census()
    counted.tenant("ADDED", _tenant("a", None))
    counted.tenant("ADDED", _tenant("b", "Ready"))
    counted.tenant("MODIFIED", _tenant("a", "Ready"))
    counted.tenant("ADDED", _tenant("c", "Failed", "database"))
    counted.tenant("ADDED", _tenant("d", "Ready", "shared"))
    counted.tenant("DELETED", _tenant("d", "Ready", "shared"))
    samples = _samples(counted)
    assert samples[("tenantdb_tenant_objects", ("Ready", "schema"))] == 2
    assert samples[("tenantdb_tenant_objects", ("Failed", "database"))] == 1
    assert ("tenantdb_tenant_objects", ("Ready", "shared")) not in samples


def test_migration_progress_is_summed_over_migrations() -> None:
    counted = census.Census()
    running = {"phase": "Running", "tenants": {"total": 5, "applied": 2, "pending": 3}}
    done = {"phase": "Succeeded", "tenants": {"total": 4, "applied": 4, "pending": 0}}
    counted.migration("ADDED", {"metadata": {"uid": "m1"}, "status": running})
    counted.migration("ADDED", {"metadata": {"uid": "m2"}, "status": done})
    counted.migration("ADDED", {"metadata": {"uid": "m3"}})
    samples = _samples(counted)
    assert samples[("tenantdb_migration_tenants", ("applied",))] == 6
    assert samples[("tenantdb_migration_tenants", ("pending",))] == 3
    assert samples[("tenantdb_migration_tenants", ("failed",))] == 0
    assert samples[("tenantdb_migrations", ("Running",))] == 1
    assert samples[("tenantdb_migrations", ("Pending",))] == 1
