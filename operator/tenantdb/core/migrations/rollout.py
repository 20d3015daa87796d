"""Fanning one unit of work out over many tenants: bounded, canaries first, halting.

``run`` keeps at most ``max_parallel`` tenants in flight (the workers share
the caller's connection pool, so the pool bounds them too), runs the
canaries first and the rest only if every canary succeeded, and stops
starting new tenants once the failure budget is spent; tenants already in
flight finish. Every result goes to ``on_result`` as it arrives, from the
worker's thread, so callers can show progress without waiting for the end.

It knows nothing about SQL: ``work`` is any function of one target.
"""

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from tenantdb.core import scoping
from tenantdb.core.migrations import outcomes

Target = scoping.TenantLocation
Work = Callable[[Target], outcomes.Result]
Listener = Callable[[outcomes.Result], None]

STOPPING = (outcomes.Outcome.FAILED, outcomes.Outcome.DRIFT)


@dataclass(frozen=True)
class Policy:
    """How a rollout proceeds."""

    max_parallel: int = 4
    """Tenants in flight at once."""
    canaries: frozenset[str] = frozenset()
    """UIDs of the tenants that go first; the rest only if all of them succeed."""
    failure_budget: int | None = None
    """Failures tolerated before no new tenant starts (None: no limit; 0: stop at the first).
    Drift always stops."""


@dataclass
class Report:
    """What a rollout did."""

    results: list[outcomes.Result] = field(default_factory=list)
    halted: bool = False
    """New tenants stopped being started (failure budget spent, drift, a canary failed)."""
    canary_failed: list[str] = field(default_factory=list)
    """Names of canary tenants that failed."""
    canaries_unfinished: bool = False
    """Some canary is not done yet (busy, blocked, retrying): the rest did not start."""

    def count(self, *wanted: outcomes.Outcome) -> int:
        """How many results had one of these outcomes."""
        return sum(1 for r in self.results if r.outcome in wanted)


def run(
    targets: Sequence[Target],
    work: Work,
    policy: Policy,
    on_result: Listener | None = None,
    stop: threading.Event | None = None,
) -> Report:
    """Apply ``work`` to every target under ``policy``; raise the first exception a worker raised."""
    report = Report()
    canaries = [t for t in targets if t.uid in policy.canaries]
    rest = [t for t in targets if t.uid not in policy.canaries]
    with ThreadPoolExecutor(
        max_workers=max(policy.max_parallel, 1), thread_name_prefix="tenantdb-rollout"
    ) as pool:
        runner = _Runner(pool, work, policy, report, on_result, stop)
        if canaries:
            runner.run(canaries)
            failed = [r for r in report.results if r.outcome in STOPPING]
            if failed:
                report.canary_failed = [r.tenant.name for r in failed]
                report.halted = True
                return report
            if any(not r.outcome.done for r in report.results):
                report.canaries_unfinished = True
                return report
        runner.run(rest)
    return report


class _Runner:
    def __init__(
        self,
        pool: ThreadPoolExecutor,
        work: Work,
        policy: Policy,
        report: Report,
        on_result: Listener | None,
        stop: threading.Event | None,
    ) -> None:
        self.pool, self.work, self.policy, self.report = pool, work, policy, report
        self.on_result = on_result
        self.stop = stop
        self.failures = 0

    def run(self, targets: Iterable[Target]) -> None:
        pending = iter(targets)
        in_flight: set[Future[outcomes.Result]] = set()
        error: BaseException | None = None
        while True:
            while (
                error is None and not self._stopping() and len(in_flight) < self.policy.max_parallel
            ):
                target = next(pending, None)
                if target is None:
                    break
                in_flight.add(self.pool.submit(self._one, target))
            if not in_flight:
                break
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                if exc is not None:
                    error = error or exc
                    continue
                self._record(future.result())
        if error is not None:
            raise error

    def _one(self, target: Target) -> outcomes.Result:
        result = self.work(target)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _record(self, result: outcomes.Result) -> None:
        self.report.results.append(result)
        if result.outcome is outcomes.Outcome.DRIFT:
            self.report.halted = True
        elif result.outcome is outcomes.Outcome.FAILED:
            self.failures += 1
            budget = self.policy.failure_budget
            if budget is not None and self.failures > budget:
                self.report.halted = True

    def _stopping(self) -> bool:
        return self.report.halted or (self.stop is not None and self.stop.is_set())
