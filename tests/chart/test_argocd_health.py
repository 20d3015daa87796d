"""The Argo CD health checks (docs/argocd/*.lua) on the statuses the operator writes.

Argo CD runs health checks in gopher-lua, a Lua 5.1; lupa's ``lua51`` runs
them here. Every sample status is built by the code that builds the real
one: the status models of ``tenantdb.api``, ``reporting.write_ready``
(Tenants), ``conditions.set_ready`` (Backups) and the Migration controller's
own ``_status``, with the phases and reasons the controllers write. Flux's
kstatus reads the same samples to the same verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from lupa import lua51

from tenantdb.api import backups, conditions, migrations, tenants
from tenantdb.api.conditions import ConditionType, Reason
from tenantdb.controllers import migrations as migration_controller
from tenantdb.controllers import reporting
from tenantdb.core.migrations import errors as migration_errors
from tenantdb.core.migrations import planning
from tests.unit.api.test_kstatus import kstatus

ARGOCD = Path(__file__).resolve().parents[2] / "docs" / "argocd"
KINDS = ("Tenant", "Migration", "Backup")


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """What Argo CD shows for ``obj``: the script's (status, message)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    script = (ARGOCD / f"{kind.lower()}.lua").read_text()
    result = runtime.execute(script)
    return str(result["status"]), str(result["message"] or "")


def body(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "team", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_the_argocd_cm_patch_carries_the_scripts() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["data"] == {
        f"resource.customizations.health.tenantdb.io_{kind}": (
            ARGOCD / f"{kind.lower()}.lua"
        ).read_text()
        for kind in KINDS
    }


# --- Tenants: the status the Tenant controller patches ---


def tenant_status(
    phase: tenants.Phase,
    ready: conditions.ConditionStatus,
    reason: str,
    message: str,
    generation: int = 1,
    isolation: tuple[conditions.ConditionStatus, str, str] | None = None,
) -> dict[str, Any]:
    """Ready (and IsolationVerified) the way ``reporting`` writes them."""
    patch = kopf.Patch()
    reporting.write_ready(patch, {}, generation, phase.value, ready, reason, message)
    if isolation is not None:
        reporting.write_condition(
            patch, {}, generation, ConditionType.ISOLATION_VERIFIED, *isolation
        )
    written = dict(patch.status)
    status = tenants.TenantStatus.model_validate(written)  # the CRD's own shape
    return status.to_api()


TENANTS = [
    ("no status yet", None, "Progressing"),
    (
        "provisioned",
        tenant_status(tenants.Phase.READY, "True", Reason.PROVISIONED, "tenant is provisioned"),
        "Healthy",
    ),
    (
        "verified",
        tenant_status(
            tenants.Phase.READY,
            "True",
            Reason.PROVISIONED,
            "tenant is provisioned",
            isolation=("True", Reason.VERIFIED, "isolation verified"),
        ),
        "Healthy",
    ),
    (
        "drift repaired",
        tenant_status(
            tenants.Phase.READY,
            "True",
            Reason.PROVISIONED,
            "tenant is provisioned",
            isolation=("True", Reason.REPAIRED, "repaired: grant to PUBLIC"),
        ),
        "Healthy",
    ),
    (
        "drift remains",
        tenant_status(
            tenants.Phase.READY,
            "True",
            Reason.PROVISIONED,
            "tenant is provisioned",
            isolation=("False", Reason.ISOLATION_DRIFT, "still drifting: grant to PUBLIC"),
        ),
        "Degraded",
    ),
    (
        "suspended",
        tenant_status(
            tenants.Phase.SUSPENDED, "True", Reason.SUSPENDED, "login disabled; data kept"
        ),
        "Suspended",
    ),
    (
        "database unavailable, retried",
        tenant_status(
            tenants.Phase.PENDING, "False", Reason.DATABASE_UNAVAILABLE, "connection refused"
        ),
        "Progressing",
    ),
    (
        "waiting for a migration",
        tenant_status(
            tenants.Phase.PENDING,
            "False",
            migration_errors.HeldBack.reason,
            "version 3 is still rolling out",
        ),
        "Progressing",
    ),
    (
        "domain conflict",
        tenant_status(
            tenants.Phase.FAILED, "False", Reason.DOMAIN_CONFLICT, "acme.example.com is taken"
        ),
        "Degraded",
    ),
    (
        "unsupported",
        tenant_status(tenants.Phase.FAILED, "False", Reason.UNSUPPORTED, "serverRef"),
        "Degraded",
    ),
]


@pytest.mark.parametrize(
    ("status", "expected"), [t[1:] for t in TENANTS], ids=[t[0] for t in TENANTS]
)
def test_tenant_health(status: dict[str, Any] | None, expected: str) -> None:
    found, message = health("Tenant", body("Tenant", status))
    assert found == expected
    if status is not None and expected != "Progressing":
        assert message  # Argo CD shows why
    if expected == "Degraded":
        assert message in {c["message"] for c in status["conditions"]}  # type: ignore[index]


def test_tenant_with_a_spec_change_not_yet_reconciled_is_progressing() -> None:
    status = tenant_status(tenants.Phase.READY, "True", Reason.PROVISIONED, "ok", generation=1)
    found, message = health("Tenant", body("Tenant", status, generation=2))
    assert (found, message) == ("Progressing", "Waiting for the operator to reconcile generation 2")
    failed = tenant_status(tenants.Phase.FAILED, "False", Reason.INVALID_SPEC, "bad", generation=1)
    assert health("Tenant", body("Tenant", failed, generation=2))[0] == "Progressing"


def test_tenant_being_deleted_is_progressing() -> None:
    obj = body("Tenant", tenant_status(tenants.Phase.READY, "True", Reason.PROVISIONED, "ok"))
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert health("Tenant", obj) == ("Progressing", "Deleting")


# --- Migrations: the status the Migration controller writes (its own _status) ---


def migration_status(
    phase: migrations.Phase,
    ready: bool,
    reason: str,
    message: str,
    generation: int = 1,
) -> dict[str, Any]:
    verdict = planning.Verdict(phase, ready, reason, message)
    counts = planning.Counts(total=3, applied=2 if ready else 1, failed=0, pending=1)
    return migration_controller._status({}, verdict, counts, [], generation)


MIGRATIONS = [
    ("no status yet", None, "Progressing"),
    (
        "awaiting approval",
        migration_status(
            migrations.Phase.AWAITING_APPROVAL,
            False,
            Reason.AWAITING_APPROVAL,
            "waiting for approval to apply version 3 on 3 of 3 tenant(s)",
        ),
        "Suspended",
    ),
    (
        "rolling out",
        migration_status(
            migrations.Phase.RUNNING, False, Reason.ROLLING_OUT, "1/3 applied, 0 failed"
        ),
        "Progressing",
    ),
    (
        "rolling back",
        migration_status(
            migrations.Phase.RUNNING, False, Reason.ROLLING_BACK, "1/3 rolled back, 0 failed"
        ),
        "Progressing",
    ),
    (
        "pending on a busy tenant",
        migration_status(
            migrations.Phase.PENDING, False, migration_errors.TenantBusy.reason, "acme is locked"
        ),
        "Progressing",
    ),
    (
        "applied",
        migration_status(migrations.Phase.SUCCEEDED, True, Reason.APPLIED, "3/3 applied"),
        "Healthy",
    ),
    (
        "dry run passed",
        migration_status(migrations.Phase.SUCCEEDED, True, Reason.DRY_RUN_PASSED, "dry run passed"),
        "Healthy",
    ),
    (
        "rolled back",
        migration_status(migrations.Phase.SUCCEEDED, True, Reason.ROLLED_BACK, "rolled back"),
        "Healthy",
    ),
    *[
        (
            f"failed {reason}",
            migration_status(migrations.Phase.FAILED, False, reason, f"{reason} on acme"),
            "Degraded",
        )
        for reason in (
            Reason.MIGRATION_FAILED,
            Reason.DRY_RUN_FAILED,
            Reason.ROLLBACK_FAILED,
            Reason.INVALID_SPEC,
            migration_errors.DuplicateVersion.reason,
        )
    ],
    *[
        (
            f"halted {reason}",
            migration_status(migrations.Phase.HALTED, False, reason, f"{reason}: acme"),
            "Degraded",
        )
        for reason in (
            Reason.ROLLOUT_HALTED,
            Reason.CANARY_FAILED,
            Reason.CHECKSUM_MISMATCH,
            Reason.ROLLBACK_BLOCKED,
        )
    ],
]


@pytest.mark.parametrize(
    ("status", "expected"), [m[1:] for m in MIGRATIONS], ids=[m[0] for m in MIGRATIONS]
)
def test_migration_health(status: dict[str, Any] | None, expected: str) -> None:
    found, message = health("Migration", body("Migration", status))
    assert found == expected
    if status is not None:
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["message"] in message


def test_migration_with_a_spec_change_not_yet_reconciled_is_progressing() -> None:
    """Approving (spec.approved: true) bumps the generation: Suspended gives way at once."""
    waiting = migration_status(
        migrations.Phase.AWAITING_APPROVAL, False, Reason.AWAITING_APPROVAL, "approve", 1
    )
    found, _ = health("Migration", body("Migration", waiting, generation=2))
    assert found == "Progressing"


# --- Backups: the status model with Ready as the Backup controller sets it ---


def backup_status(
    phase: backups.Phase, ready: conditions.ConditionStatus, reason: str
) -> dict[str, Any]:
    condition = conditions.set_ready([], phase.value, ready, reason, f"{reason} msg", 1)
    status = backups.BackupStatus(
        observed_generation=1,
        conditions=condition,
        phase=phase,
        location="file:///var/lib/tenantdb/backups/team/acme/1.dump",
    )
    return status.to_api()


BACKUPS = [
    ("no status yet", None, "Progressing"),
    ("pending", backup_status(backups.Phase.PENDING, "False", "Pending"), "Progressing"),
    ("running", backup_status(backups.Phase.RUNNING, "False", "Running"), "Progressing"),
    ("completed", backup_status(backups.Phase.COMPLETED, "True", "Completed"), "Healthy"),
    ("failed", backup_status(backups.Phase.FAILED, "False", "BackupFailed"), "Degraded"),
]


@pytest.mark.parametrize(
    ("status", "expected"), [b[1:] for b in BACKUPS], ids=[b[0] for b in BACKUPS]
)
def test_backup_health(status: dict[str, Any] | None, expected: str) -> None:
    assert health("Backup", body("Backup", status))[0] == expected


def test_backup_with_a_spec_change_not_yet_reconciled_is_progressing() -> None:
    status = backup_status(backups.Phase.COMPLETED, "True", "Completed")
    assert health("Backup", body("Backup", status, generation=2))[0] == "Progressing"


KSTATUS = {"Progressing": "InProgress", "Healthy": "Current", "Suspended": "Current"}
SAMPLES = [
    (kind, sample)
    for kind, samples in (("Tenant", TENANTS), ("Migration", MIGRATIONS), ("Backup", BACKUPS))
    for sample in samples
    if sample[1] is not None and sample[0] != "drift remains"  # kstatus reads Ready's pair only
]


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [(kind, s[1], s[2]) for kind, s in SAMPLES],
    ids=[f"{kind}: {s[0]}" for kind, s in SAMPLES],
)
def test_flux_kstatus_agrees_with_argo_cd(kind: str, status: dict[str, Any], expected: str) -> None:
    """Degraded is Failed (Stalled=True), Progressing is InProgress (Reconciling=True),
    Healthy and Suspended are Current: a Migration awaiting approval holds up nothing."""
    assert kstatus(1, status) == KSTATUS.get(expected, "Failed")
