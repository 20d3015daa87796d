"""Reconciling and Stalled follow the phase, so kstatus (Flux) reads our objects right.

``kstatus`` below is sigs.k8s.io/cli-utils' generic rule for custom
resources: deletion, then ``observedGeneration``, then ``Reconciling=True``
(InProgress) or ``Stalled=True`` (Failed); otherwise Current.
"""

from __future__ import annotations

from typing import Any

import pytest

from tenantdb.api import backups, conditions, migrations, tenants

Progress = conditions.Progress

EXPECTED = {
    tenants.Phase.PENDING: Progress.PROGRESSING,
    tenants.Phase.PROVISIONING: Progress.PROGRESSING,
    tenants.Phase.READY: Progress.DONE,
    tenants.Phase.SUSPENDED: Progress.DONE,
    tenants.Phase.FAILED: Progress.STALLED,
    tenants.Phase.DELETING: Progress.PROGRESSING,
    migrations.Phase.AWAITING_APPROVAL: Progress.DONE,
    migrations.Phase.RUNNING: Progress.PROGRESSING,
    migrations.Phase.SUCCEEDED: Progress.DONE,
    migrations.Phase.HALTED: Progress.STALLED,
    backups.Phase.COMPLETED: Progress.DONE,
    backups.Phase.EXPIRED: Progress.DONE,
    backups.SchedulePhase.ACTIVE: Progress.DONE,
}


def kstatus(generation: int, status: dict[str, Any]) -> str:
    if status.get("observedGeneration") != generation:
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


def _status(conds: list[conditions.Condition], generation: int = 1) -> dict[str, Any]:
    return {"observedGeneration": generation, "conditions": [c.to_api() for c in conds]}


@pytest.mark.parametrize(
    "phase",
    [*tenants.Phase, *migrations.Phase, *backups.Phase, *backups.SchedulePhase],
    ids=str,
)
def test_every_phase_of_every_kind_has_its_progress(phase: str) -> None:
    expected = EXPECTED.get(phase)  # type: ignore[call-overload]
    assert expected is not None, f"phase {phase} has no expected progress here"
    assert conditions.progress_of(phase, "False") is expected


@pytest.mark.parametrize(
    ("phase", "ready", "seen"),
    [
        ("Provisioning", "False", "InProgress"),
        ("Pending", "False", "InProgress"),  # a transient error, retried by the operator
        ("Running", "False", "InProgress"),
        ("Failed", "False", "Failed"),
        ("Halted", "False", "Failed"),
        ("AwaitingApproval", "False", "Current"),
        ("Ready", "True", "Current"),
        ("Completed", "True", "Current"),
        ("Expired", "False", "Current"),
    ],
)
def test_kstatus_reads_the_phase(phase: str, ready: conditions.ConditionStatus, seen: str) -> None:
    conds = conditions.set_ready([], phase, ready, "Why", "what happened", 1)
    assert kstatus(1, _status(conds)) == seen
    assert kstatus(2, _status(conds)) == "InProgress"  # the operator has not seen the spec


def test_the_pair_carries_readys_reason_and_goes_once_done() -> None:
    working = conditions.set_ready([], "Provisioning", "False", "Restoring", "from b1", 3, "t1")
    assert [(c.type, c.status, c.reason, c.message) for c in working] == [
        ("Ready", "False", "Restoring", "from b1"),
        ("Reconciling", "True", "Restoring", "from b1"),
    ]
    still = conditions.set_ready(working, "Pending", "False", "Busy", "locked", 3, "t2")
    reconciling = next(c for c in still if c.type == "Reconciling")
    assert reconciling.last_transition_time == "t1" and reconciling.reason == "Busy"
    stuck = conditions.set_ready(still, "Failed", "False", "DomainConflict", "taken", 3, "t3")
    assert [(c.type, c.status) for c in stuck] == [("Ready", "False"), ("Stalled", "True")]
    done = conditions.set_ready(stuck, "Ready", "True", "Provisioned", "", 4, "t4")
    assert [(c.type, c.status) for c in done] == [("Ready", "True")]


def test_other_conditions_are_kept() -> None:
    seeded = conditions.set_condition([], conditions.ConditionType.SEEDED, "True", "Seeded", "", 1)
    conds = conditions.set_ready(seeded, "Running", "False", "RollingOut", "", 1)
    assert {c.type for c in conds} == {"Ready", "Reconciling", "Seeded"}
