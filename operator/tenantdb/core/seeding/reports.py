"""What a seeding run tells its caller: per-seeder results, the report, progress events.

Plain data only; nothing here touches the database.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What happened to one seeder in one run."""

    APPLIED = "applied"
    """It ran and its history row was written in the same commit."""
    SKIPPED = "skipped"
    """The history already holds this version: nothing ran."""
    REMOVED = "removed"
    """``unseed`` removed its data and its history row."""


@dataclass(frozen=True)
class SeederResult:
    """One seeder's line in a report."""

    name: str
    version: int
    profile: str
    outcome: Outcome
    rows: int = 0
    """Rows inserted, updated or deleted in the tenant's tables by this run."""
    seconds: float = 0.0
    """Wall-clock time of the seeder's transaction."""
    detail: str = ""
    """Why it was skipped."""
    warning: str = ""
    """Something a human should look at (the file changed without a version bump)."""


@dataclass
class SeedReport:
    """What one ``seed`` or ``unseed`` did to one tenant, seeder by seeder, in order."""

    tenant_uid: str
    profile: str
    results: list[SeederResult] = field(default_factory=list)

    @property
    def applied(self) -> list[str]:
        """Names of the seeders that ran."""
        return [r.name for r in self.results if r.outcome is Outcome.APPLIED]

    @property
    def skipped(self) -> list[str]:
        """Names of the seeders already at their version."""
        return [r.name for r in self.results if r.outcome is Outcome.SKIPPED]

    @property
    def removed(self) -> list[str]:
        """Names of the seeders whose data ``unseed`` removed."""
        return [r.name for r in self.results if r.outcome is Outcome.REMOVED]

    @property
    def rows(self) -> int:
        """Rows written (or removed) in the tenant's tables, all seeders together."""
        return sum(r.rows for r in self.results)

    @property
    def warnings(self) -> list[str]:
        """What deserves a human's attention (seeders edited without a version bump)."""
        return [f"{r.name}: {r.warning}" for r in self.results if r.warning]

    def summary(self) -> str:
        """One sentence for a condition message or the CLI."""
        parts = []
        if self.applied:
            parts.append(f"{len(self.applied)} applied ({', '.join(self.applied)})")
        if self.removed:
            parts.append(f"{len(self.removed)} removed ({', '.join(self.removed)})")
        if self.skipped:
            parts.append(f"{len(self.skipped)} already seeded")
        if not parts:
            return "no seeders selected"
        return "; ".join(parts) + f"; {self.rows} rows"


class State(StrEnum):
    """Where a seeder is in its run, for progress displays."""

    STARTED = "started"
    ROWS = "rows"
    APPLIED = "applied"
    SKIPPED = "skipped"
    REMOVED = "removed"
    FAILED = "failed"


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a run: seeder ``position`` (from 1) of ``total``, and its state."""

    seeder: str
    position: int
    total: int
    state: State
    done: int = 0
    """Units of work done inside the seeder (``State.ROWS`` events), as it reports them."""
    expected: int = 0
    """Units of work the seeder expects in all; 0 when it does not say."""


Progress = Callable[[ProgressEvent], None]
"""Called from the seeding thread; must be quick and must not raise."""
