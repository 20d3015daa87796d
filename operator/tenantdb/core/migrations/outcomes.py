"""What the engine reports for one tenant, and the context it works in."""

from dataclasses import dataclass
from enum import StrEnum

from tenantdb.core import commands, scoping


class Outcome(StrEnum):
    """What one engine call did on one tenant."""

    APPLIED = "applied"
    ALREADY_APPLIED = "alreadyApplied"
    PASSED = "passed"
    """A dry run succeeded (and was rolled back)."""
    ROLLED_BACK = "rolledBack"
    NOT_APPLIED = "notApplied"
    """A rollback found nothing to undo."""
    FAILED = "failed"
    RETRY = "retry"
    """A transient error (lock timeout, deadlock); try again later."""
    BUSY = "busy"
    """Another worker holds the tenant's lock."""
    BLOCKED = "blocked"
    """Lower versions are missing (or, for a rollback, higher ones still applied)."""
    DRIFT = "drift"
    """Applied with another checksum; nothing was run."""

    @property
    def done(self) -> bool:
        """The tenant is where the caller wanted it."""
        return self in (
            Outcome.APPLIED,
            Outcome.ALREADY_APPLIED,
            Outcome.PASSED,
            Outcome.ROLLED_BACK,
            Outcome.NOT_APPLIED,
        )


@dataclass(frozen=True)
class Result:
    """One tenant's outcome."""

    tenant: scoping.TenantLocation
    outcome: Outcome
    error: str | None = None
    seconds: float = 0.0
    waiting_for: tuple[int, ...] = ()
    findings: tuple[str, ...] = ()
    """For shared migrations: what ``securing.secure_tables`` had to fix."""


@dataclass(frozen=True)
class Context:
    """Where the engine works and in whose name (recorded as ``applied_by``)."""

    server: commands.Server
    applied_by: str
