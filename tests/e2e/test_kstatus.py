"""Flux's view (kstatus) of the objects the operator reconciles, read from the API server."""

from __future__ import annotations

import pytest

from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually, tenant
from tests.e2e.test_backups import backup, wait_backup
from tests.e2e.test_migrations_rollout import migration, wait_phase
from tests.unit.api.test_kstatus import kstatus

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]


def _seen(kubectl: Kubectl, kind: str, name: str) -> str:
    obj = kubectl.get(kind, name)
    return kstatus(obj["metadata"]["generation"], obj.get("status") or {})


def _types(kubectl: Kubectl, kind: str, name: str) -> dict[str, str]:
    status = kubectl.get(kind, name).get("status") or {}
    return {c["type"]: c["status"] for c in status.get("conditions") or []}


def test_done_objects_are_current_and_a_permanent_failure_is_failed(kubectl: Kubectl) -> None:
    kubectl.apply(tenant("ks-first", domain="ks.example.com"))
    kubectl.wait("tenant/ks-first", "condition=Ready")
    assert _seen(kubectl, "tenant", "ks-first") == "Current"
    assert "Reconciling" not in _types(kubectl, "tenant", "ks-first")

    kubectl.apply(tenant("ks-second", domain="ks.example.com"))
    kubectl.wait("tenant/ks-second", "condition=Stalled")
    assert _seen(kubectl, "tenant", "ks-second") == "Failed"

    kubectl.apply(migration("ks-gated", 1, "CREATE TABLE gated (id int)", approved=False))
    wait_phase(kubectl, "ks-gated", "AwaitingApproval")
    assert _seen(kubectl, "migration", "ks-gated") == "Current"  # waits for a person
    kubectl.run(
        "patch", "migration", "ks-gated", "--type=merge", "-p", '{"spec":{"approved":true}}'
    )
    wait_phase(kubectl, "ks-gated", "Succeeded")
    assert _types(kubectl, "migration", "ks-gated") == {"Ready": "True"}

    kubectl.apply(backup("ks-b1", "ks-first"))
    wait_backup(kubectl, "ks-b1")
    assert _seen(kubectl, "backup", "ks-b1") == "Current"


def test_work_in_flight_is_in_progress(kubectl: Kubectl) -> None:
    """A restore from a Backup that does not exist yet waits: Reconciling, not Stalled."""
    kubectl.apply(tenant("ks-copy", restoreFrom="\n    backup: ks-later"))
    eventually(lambda: _types(kubectl, "tenant", "ks-copy").get("Reconciling") == "True")
    assert _seen(kubectl, "tenant", "ks-copy") == "InProgress"
    assert "Stalled" not in _types(kubectl, "tenant", "ks-copy")
