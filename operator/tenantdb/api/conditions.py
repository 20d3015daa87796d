"""Conditions in the Kubernetes shape, with every type and reason in one place.

Argo CD and ``kubectl wait --for=condition=Ready`` read these, so the shape
follows the Kubernetes API conventions exactly. ``Ready`` is written only
through ``set_ready``, which also keeps kstatus's ``Reconciling`` and
``Stalled`` (what Flux and other kstatus readers judge by) in step with the
object's phase.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from tenantdb.api import base


class ConditionType(StrEnum):
    """The condition types tenantdb objects carry."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    """kstatus: ``True`` while the operator works towards the spec (absent when done)."""
    STALLED = "Stalled"
    """kstatus: ``True`` when nothing progresses until someone changes something."""
    ISOLATION_VERIFIED = "IsolationVerified"
    SEEDED = "Seeded"
    RESTORED = "Restored"
    VERIFIED = "Verified"
    HEALTHY = "Healthy"


class Reason(StrEnum):
    """Why a condition has its status: one CamelCase word, stable for automation."""

    PROVISIONING = "Provisioning"
    CONNECTED = "Connected"
    PROVISIONED = "Provisioned"
    DOMAIN_CONFLICT = "DomainConflict"
    NAME_CONFLICT = "NameConflict"
    INVALID_SPEC = "InvalidSpec"
    UNSUPPORTED = "Unsupported"
    DATABASE_ERROR = "DatabaseError"
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    SUSPENDED = "Suspended"
    DELETING = "Deleting"
    DELETION_BLOCKED = "DeletionBlocked"
    RETAINED = "Retained"
    CREDENTIALS_ROTATED = "CredentialsRotated"
    VERIFIED = "Verified"
    REPAIRED = "Repaired"
    ISOLATION_DRIFT = "IsolationDrift"
    SEEDING = "Seeding"
    SEEDED = "Seeded"
    SEED_FAILED = "SeedFailed"
    FORBIDDEN_IN_PRODUCTION = "ForbiddenInProduction"
    INVALID_SEEDER = "InvalidSeeder"
    UNKNOWN_SEEDER = "UnknownSeeder"
    INVALID_SEED_SELECTION = "InvalidSeedSelection"
    AWAITING_APPROVAL = "AwaitingApproval"
    ROLLING_OUT = "RollingOut"
    APPLIED = "Applied"
    MIGRATION_FAILED = "MigrationFailed"
    ROLLOUT_HALTED = "RolloutHalted"
    CANARY_FAILED = "CanaryFailed"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    DUPLICATE_VERSION = "DuplicateVersion"
    WAITING_FOR_MIGRATION = "WaitingForMigration"
    DRY_RUN_PASSED = "DryRunPassed"
    DRY_RUN_FAILED = "DryRunFailed"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    ROLLBACK_BLOCKED = "RollbackBlocked"
    SHARED_TABLES_SECURED = "SharedTablesSecured"
    STATEMENT_CANCELLED = "StatementCancelled"
    SESSION_TERMINATED = "SessionTerminated"
    BACKUP_PENDING = "BackupPending"
    BACKING_UP = "BackingUp"
    BACKUP_COMPLETED = "BackupCompleted"
    BACKUP_FAILED = "BackupFailed"
    BACKUP_EXPIRED = "BackupExpired"
    TENANT_NOT_FOUND = "TenantNotFound"
    STORAGE_ERROR = "StorageError"
    INTERRUPTED = "Interrupted"
    VERIFIED_BACKUP = "BackupVerified"
    VERIFICATION_FAILED = "VerificationFailed"
    RESTORING = "Restoring"
    RESTORED = "Restored"
    RESTORE_FAILED = "RestoreFailed"
    SCHEDULED = "Scheduled"
    SCHEDULE_SUSPENDED = "ScheduleSuspended"
    INVALID_SCHEDULE = "InvalidSchedule"
    HEALTHY = "Healthy"
    CONNECTIONS_NEAR_LIMIT = "ConnectionsNearLimit"
    LONG_TRANSACTION = "LongTransaction"
    INVALID_INDEXES = "InvalidIndexes"
    VALIDATED = "Validated"
    VALIDATION_FINDINGS = "ValidationFindings"
    RESETTING = "Resetting"
    RESET = "Reset"
    RESET_REFUSED = "ResetRefused"
    RESET_FAILED = "ResetFailed"
    BUSY = "Busy"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(base.ApiModel):
    """One observation of the object's state (Kubernetes metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    """The condition type, for example ``Ready``."""
    status: ConditionStatus
    """``True``, ``False`` or ``Unknown``."""
    reason: str = Field(min_length=1, max_length=1024)
    """A CamelCase word saying why the condition has its status."""
    message: str = Field(default="", max_length=32768)
    """A sentence for humans."""
    last_transition_time: str
    """When the status last changed (RFC 3339)."""
    observed_generation: int = Field(default=0, ge=0)
    """The ``metadata.generation`` this condition was computed for."""


def field() -> Any:
    """The ``conditions`` field of a status: a list keyed by ``type``."""
    return Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class ObservedStatus(base.ApiModel):
    """What every tenantdb status carries, so ``kubectl wait`` and Argo CD work."""

    observed_generation: int | None = None
    """The ``metadata.generation`` last reconciled."""
    conditions: list[Condition] = field()
    """Ready and the other conditions, in the Kubernetes shape."""


def now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    timestamp: str | None = None,
) -> list[Condition]:
    """Return ``conditions`` with one type replaced.

    ``lastTransitionTime`` only moves when the status changes, as the API
    conventions ask, so watchers can tell a flap from a steady state.
    """
    previous = next((c for c in conditions if c.type == type_), None)
    changed = previous is None or previous.status != status
    transition = (
        (timestamp or now()) if changed or previous is None else previous.last_transition_time
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=lambda c: (c.type != ConditionType.READY, c.type))


class Progress(StrEnum):
    """Where an object's reconciliation stands, as kstatus sees it."""

    DONE = "Done"
    """Nothing left to do for now (``Ready``, ``Completed``, ``AwaitingApproval`` ...)."""
    PROGRESSING = "Progressing"
    """Work in flight or retried by the operator by itself: ``Reconciling=True``."""
    STALLED = "Stalled"
    """A permanent failure or a halt: ``Stalled=True``."""


PHASE_PROGRESS: dict[str, Progress] = {
    "Pending": Progress.PROGRESSING,
    "Provisioning": Progress.PROGRESSING,
    "Running": Progress.PROGRESSING,
    "Deleting": Progress.PROGRESSING,
    "Failed": Progress.STALLED,
    "Halted": Progress.STALLED,
}
"""The progress of each phase of every kind; phases not listed are ``DONE``. A Migration
awaiting approval is done for now: a person decides, and kstatus calls it Current."""


def progress_of(phase: str, ready: ConditionStatus) -> Progress:
    """The progress an object in ``phase`` with that ``Ready`` status is making."""
    return Progress.DONE if ready == "True" else PHASE_PROGRESS.get(phase, Progress.DONE)


def set_ready(
    conditions: list[Condition],
    phase: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    timestamp: str | None = None,
) -> list[Condition]:
    """Return ``conditions`` with ``Ready`` replaced and kstatus's pair following ``phase``.

    ``Reconciling`` (in progress) or ``Stalled`` (stuck) is ``True`` with
    Ready's reason and message; the other one, and both once done, are
    removed (kstatus reads an absent condition as ``False``).
    """
    updated = set_condition(
        conditions, ConditionType.READY, status, reason, message, generation, timestamp
    )
    active = {
        Progress.PROGRESSING: ConditionType.RECONCILING,
        Progress.STALLED: ConditionType.STALLED,
    }.get(progress_of(phase, status))
    if active is not None:
        updated = set_condition(updated, active, "True", reason, message, generation, timestamp)
    kstatus = (ConditionType.RECONCILING, ConditionType.STALLED)
    return [c for c in updated if c.type not in kstatus or c.type == active]


def is_true(conditions: list[Condition], type_: ConditionType) -> bool:
    """Whether the condition of that type is present and ``True``."""
    return any(c.type == type_ and c.status == "True" for c in conditions)
