"""The ``Migration`` resource: one versioned change rolled out to tenants."""

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic.config import JsonDict

from tenantdb import settings
from tenantdb.api import base, conditions, resources, selectors

DURATION_PATTERN = settings.DURATION_PATTERN
"""A PostgreSQL duration as ``lock_timeout``/``statement_timeout`` accept it."""
MAX_TIMEOUT_MS = settings.MAX_TIMEOUT_MS
milliseconds = settings.milliseconds


def _within_limit(duration: str) -> str:
    if milliseconds(duration) > MAX_TIMEOUT_MS:
        raise ValueError(f"{duration!r} {settings.TIMEOUT_LIMIT}")
    return duration


_TIMEOUT_RULE = (
    "int(self.find('^[0-9]+')) * (self.endsWith('ms') ? 1 : self.endsWith('min') ? 60000"
    f" : self.endsWith('h') ? 3600000 : 1000) <= {MAX_TIMEOUT_MS}"
)


def _timeout(default: str) -> Any:
    return Field(
        default=default,
        pattern=DURATION_PATTERN,
        max_length=13,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": _TIMEOUT_RULE, "message": settings.TIMEOUT_LIMIT}]
        },
    )


Timeout = Annotated[str, AfterValidator(_within_limit)]
"""A ``lock_timeout``/``statement_timeout`` value PostgreSQL accepts: the
pattern, and at most ``MAX_TIMEOUT_MS`` (checked by the API server in CEL
and again when the operator parses the spec)."""

IMMUTABLE: JsonDict = {
    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]
}


class Scope(StrEnum):
    """Where a migration runs."""

    TENANT = "tenant"
    SHARED = "shared"


class FailurePolicy(StrEnum):
    """What a failure on one tenant does to the rest of the rollout."""

    HALT = "Halt"
    CONTINUE = "Continue"


class Phase(StrEnum):
    """The rollout's phase."""

    PENDING = "Pending"
    AWAITING_APPROVAL = "AwaitingApproval"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    HALTED = "Halted"


class Canary(base.ApiModel):
    """Tenants migrated first; the rest follow only if all of them succeed."""

    tenants: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list, max_length=64)
    """Names of the canary tenants."""
    count: int = Field(default=0, ge=0, le=1000)
    """Besides ``tenants``, this many further tenants (in name order) go first."""


class Strategy(base.ApiModel):
    """How the change is rolled out across tenants."""

    max_parallel: int = Field(default=4, ge=1, le=64)
    """Tenants migrated at the same time (workers share one pool per server)."""
    canary: Canary | None = None
    """Tenants that go first."""
    failure_policy: FailurePolicy = FailurePolicy.HALT
    """``Halt`` stops at the first failure; ``Continue`` goes on to the rest."""
    max_failures: int = Field(default=0, ge=0)
    """With ``Continue``: stop once more than this many tenants failed (0: no limit)."""


class MigrationSpec(base.ApiModel):
    """The desired change."""

    version: int = Field(ge=1, le=99_999_999_999_999, json_schema_extra=IMMUTABLE)
    """Ordering key, unique among Migrations (a counter or a UTC timestamp
    such as 20261123150000). Immutable."""
    description: str = Field(default="", max_length=256)
    """What the change does, recorded in the migration ledger."""
    scope: Scope = Field(default=Scope.TENANT, json_schema_extra=IMMUTABLE)
    """``tenant``: run inside every targeted tenant; ``shared``: run once on
    the shared schema of the Migration's namespace. Immutable."""
    up: str = Field(min_length=1, max_length=262_144)
    """SQL applying the change. Its sha256 is recorded; editing it after it
    has been applied is drift, reported and never re-applied."""
    down: str | None = Field(default=None, max_length=262_144)
    """SQL reverting the change, run only on an explicit rollback."""
    transactional: bool = True
    """``false`` runs statement by statement outside a transaction (for
    ``CREATE INDEX CONCURRENTLY``)."""
    tenant_selector: selectors.LabelSelector | None = None
    """Which tenants of the namespace the change targets (default: all)."""
    strategy: Strategy = Field(default_factory=Strategy)
    """Parallelism, canaries and failure handling."""
    dry_run: bool = False
    """Run ``up`` in a transaction that is rolled back; report per tenant."""
    approved: bool = True
    """``false`` holds the rollout in ``AwaitingApproval``."""
    rollback: bool = False
    """``true`` runs ``down`` on every tenant where the change is applied."""
    lock_timeout: Timeout = _timeout("5s")
    """``SET LOCAL lock_timeout`` for each tenant's transaction (``ms``, ``s``,
    ``min`` or ``h``; at most 2147483647ms; ``0``: no timeout, or the
    operator's ``TENANTDB_MAX_LOCK_TIMEOUT``)."""
    statement_timeout: Timeout = _timeout("15min")
    """``SET LOCAL statement_timeout`` for each tenant's transaction (``ms``,
    ``s``, ``min`` or ``h``; at most 2147483647ms; ``0``: no timeout, or the
    operator's ``TENANTDB_MAX_STATEMENT_TIMEOUT``)."""


class TenantCounts(base.ApiModel):
    """Rollout progress, read from the migration ledger in one query."""

    total: int = 0
    applied: int = 0
    pending: int = 0
    failed: int = 0


class TenantFailure(base.ApiModel):
    """A tenant on which the change failed, with the database's own words."""

    tenant: str
    """The Tenant's name."""
    error: str = Field(max_length=4096)
    """The database's error message, with SQLSTATE and position."""


class TenantWaiting(base.ApiModel):
    """A tenant the rollout will try again, and why it could not finish yet."""

    tenant: str
    """The Tenant's name."""
    reason: str = Field(max_length=4096)
    """What held it back: its lock held by another operation, or the database's
    message (a lock timeout on the tenant's own tables)."""


class MigrationStatus(conditions.ObservedStatus):
    """The observed state of the rollout."""

    phase: Phase | None = None
    """Pending, AwaitingApproval, Running, Succeeded, Failed or Halted."""
    checksum: str | None = None
    """sha256 of the normalised ``up``."""
    tenants: TenantCounts = Field(default_factory=TenantCounts)
    """How many targeted tenants are applied, pending and failed."""
    failures: list[TenantFailure] = Field(default_factory=list, max_length=20)
    """The first few failures."""
    retrying: list[TenantWaiting] = Field(default_factory=list, max_length=20)
    """Pending tenants whose last attempt could not finish for a passing reason."""
    started_at: str | None = None
    """When the rollout started (RFC 3339)."""
    finished_at: str | None = None
    """When the rollout finished (RFC 3339)."""
    last_handled_retry: str | None = None
    """The value of the ``tenantdb.io/retry`` annotation the operator last acted
    on: setting the annotation to a new value retries the failed tenants."""


MIGRATION = resources.ResourceKind(
    kind="Migration",
    plural="migrations",
    short_names=("mig",),
    spec=MigrationSpec,
    status=MigrationStatus,
    description="One versioned change to the tenant data model, applied to every targeted tenant.",
    printer_columns=(
        resources.PrinterColumn("Version", ".spec.version", type="integer"),
        resources.PrinterColumn("Phase", ".status.phase"),
        resources.PrinterColumn("Applied", ".status.tenants.applied", type="integer"),
        resources.PrinterColumn("Total", ".status.tenants.total", type="integer"),
        resources.PrinterColumn("Failed", ".status.tenants.failed", type="integer"),
        resources.PrinterColumn("Description", ".spec.description", priority=1),
        resources.PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
