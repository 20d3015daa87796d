"""Live progress of a rollout: counts that move as results arrive, reported in batches.

A ``Tally`` starts from the ledger's counts and moves with each result
(from worker threads, hence the lock). ``Tally.flush`` hands a snapshot to
a reporter at most once per ``interval`` seconds, plus once at the end, so
a rollout over a thousand tenants costs a handful of status writes (the
controller) or redraws (the CLI's progress bar), not one per tenant.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tenantdb.core.migrations import outcomes, planning

Outcome = outcomes.Outcome


@dataclass(frozen=True)
class Snapshot:
    """Counts and the first failures at one moment."""

    counts: planning.Counts
    failures: tuple[tuple[str, str], ...] = ()
    last: str = ""
    """The tenant reported last, for a progress line."""


Reporter = Callable[[Snapshot], None]


@dataclass
class Tally:
    """Thread-safe counts of one rollout, starting from the ledger's."""

    mode: planning.Mode
    counts: planning.Counts
    failures: list[tuple[str, str]] = field(default_factory=list)
    reporter: Reporter | None = None
    interval: float = 1.0
    """Seconds between two reports while results arrive."""
    max_failures_listed: int = 20
    drift: dict[str, str] = field(default_factory=dict)
    """Tenant name -> why, for every tenant whose result was drift."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reported_at: float | None = None
    _last: str = ""

    def add(self, result: outcomes.Result) -> None:
        """Count one result; report if the interval has passed."""
        with self._lock:
            self.counts = _moved(self.mode, self.counts, result)
            if result.outcome is Outcome.DRIFT:
                self.drift[result.tenant.name] = result.error or "drifted"
            listed = result.outcome in (Outcome.FAILED, Outcome.DRIFT)
            if listed and len(self.failures) < self.max_failures_listed:
                self.failures.append((result.tenant.name, result.error or str(result.outcome)))
            self._last = result.tenant.name
            due = self._reported_at is None or time.monotonic() - self._reported_at >= self.interval
        if due:
            self.flush()

    def snapshot(self) -> Snapshot:
        """The current counts."""
        with self._lock:
            return Snapshot(self.counts, tuple(self.failures), self._last)

    def flush(self) -> None:
        """Report now."""
        with self._lock:
            self._reported_at = time.monotonic()
        if self.reporter is not None:
            self.reporter(self.snapshot())


_FORWARD = (Outcome.APPLIED, Outcome.ALREADY_APPLIED, Outcome.PASSED)
_BACKWARD = (Outcome.ROLLED_BACK, Outcome.NOT_APPLIED)


def _moved(
    mode: planning.Mode, counts: planning.Counts, result: outcomes.Result
) -> planning.Counts:
    """Counts after one result; busy, blocked and retrying tenants stay pending."""
    outcome = result.outcome
    counts = replace(counts, retrying=_retrying(counts.retrying, result))
    pending = max(counts.pending - 1, 0)
    rollback = mode is planning.Mode.ROLLBACK
    if outcome in (_BACKWARD if rollback else _FORWARD):
        applied = max(counts.applied + (-1 if rollback else 1), 0)
        return replace(counts, applied=applied, pending=pending)
    if outcome is Outcome.FAILED:
        return replace(counts, failed=counts.failed + 1, pending=pending)
    if outcome is Outcome.DRIFT and not rollback:
        return replace(counts, drifted=[*counts.drifted, result.tenant.name], pending=pending)
    return counts


BUSY_REASON = "another operation holds the tenant's lock (another replica, or the CLI)"


def _retrying(listed: list[tuple[str, str]], result: outcomes.Result) -> list[tuple[str, str]]:
    """The retrying tenants after one result: this one named with its reason while its
    attempt could not finish for a passing reason, and no longer once it did."""
    name = result.tenant.name
    kept = [(tenant, reason) for tenant, reason in listed if tenant != name]
    if result.outcome is Outcome.BUSY:
        return [*kept, (name, BUSY_REASON)][: planning.RETRYING_LISTED]
    if result.outcome is Outcome.RETRY:
        return [*kept, (name, result.error or "retrying")][: planning.RETRYING_LISTED]
    return kept
