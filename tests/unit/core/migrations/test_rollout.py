"""The rollout runner's policy logic, with plain functions standing in for the engine."""

import threading

import pytest

from tenantdb.api import migrations as api
from tenantdb.core import scoping
from tenantdb.core.migrations import commands, ledger, outcomes, planning, progress, rollout

Outcome = outcomes.Outcome


def tenants(count: int) -> list[scoping.TenantLocation]:
    return [
        scoping.TenantLocation(f"uid-{i}", f"t{i:02d}", "ns", "schema", f"s{i}", "db", "o", "l")
        for i in range(count)
    ]


class Recorder:
    """Work that records order and peak concurrency, failing on chosen tenants."""

    def __init__(
        self, failing: set[str] = frozenset(), gate: threading.Event | None = None
    ) -> None:  # type: ignore[assignment]
        self.failing = failing
        self.order: list[str] = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.gate = gate

    def __call__(self, target: scoping.TenantLocation) -> outcomes.Result:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.order.append(target.name)
        if self.gate is not None:
            self.gate.wait(5)
        with self.lock:
            self.active -= 1
        outcome = Outcome.FAILED if target.name in self.failing else Outcome.APPLIED
        return outcomes.Result(target, outcome, "boom" if outcome is Outcome.FAILED else None)


def test_parallelism_is_bounded_and_everything_runs() -> None:
    gate = threading.Event()
    work = Recorder(gate=gate)
    timer = threading.Timer(0.2, gate.set)
    timer.start()
    report = rollout.run(tenants(12), work, rollout.Policy(max_parallel=3))
    timer.join()
    assert work.peak == 3
    assert report.count(Outcome.APPLIED) == 12 and not report.halted


def test_canaries_go_first_and_alone() -> None:
    targets = tenants(6)
    work = Recorder()
    canaries = frozenset({"uid-4", "uid-5"})
    report = rollout.run(targets, work, rollout.Policy(max_parallel=4, canaries=canaries))
    assert set(work.order[:2]) == {"t04", "t05"}
    assert report.count(Outcome.APPLIED) == 6


def test_a_failed_canary_stops_everything_else() -> None:
    work = Recorder(failing={"t04"})
    policy = rollout.Policy(max_parallel=2, canaries=frozenset({"uid-4"}), failure_budget=None)
    report = rollout.run(tenants(6), work, policy)
    assert work.order == ["t04"]
    assert report.halted and report.canary_failed == ["t04"]


def test_halt_stops_starting_tenants_after_the_first_failure() -> None:
    work = Recorder(failing={"t01"})
    report = rollout.run(tenants(10), work, rollout.Policy(max_parallel=1, failure_budget=0))
    assert work.order == ["t00", "t01"]
    assert report.halted


@pytest.mark.parametrize(("budget", "started"), [(None, 10), (2, 6), (1, 4)])
def test_continue_goes_on_until_the_budget_is_spent(budget: int | None, started: int) -> None:
    work = Recorder(failing={"t01", "t03", "t05", "t07"})
    report = rollout.run(tenants(10), work, rollout.Policy(max_parallel=1, failure_budget=budget))
    assert len(work.order) == started
    assert report.halted is (budget is not None)


def test_worker_exceptions_stop_the_rollout_and_surface() -> None:
    def work(target: scoping.TenantLocation) -> outcomes.Result:
        if target.name == "t02":
            raise RuntimeError("database went away")
        return outcomes.Result(target, Outcome.APPLIED)

    with pytest.raises(RuntimeError, match="went away"):
        rollout.run(tenants(20), work, rollout.Policy(max_parallel=1))


def test_a_stop_request_starts_no_new_tenant() -> None:
    stop = threading.Event()

    def work(target: scoping.TenantLocation) -> outcomes.Result:
        stop.set()
        return outcomes.Result(target, Outcome.APPLIED)

    report = rollout.run(tenants(5), work, rollout.Policy(max_parallel=1), stop=stop)
    assert len(report.results) == 1


def test_tally_counts_move_with_results_and_reports_are_batched() -> None:
    reports: list[progress.Snapshot] = []
    tally = progress.Tally(
        planning.Mode.APPLY,
        planning.Counts(total=5, pending=5),
        reporter=reports.append,
        interval=3600,
    )
    targets = tenants(5)
    tally.add(outcomes.Result(targets[0], Outcome.APPLIED))
    tally.add(outcomes.Result(targets[1], Outcome.FAILED, "boom"))
    tally.add(outcomes.Result(targets[2], Outcome.BUSY))
    tally.add(outcomes.Result(targets[3], Outcome.ALREADY_APPLIED))
    assert len(reports) == 1  # the first result reports at once, the rest wait for the interval
    tally.flush()
    counts = reports[-1].counts
    assert (counts.applied, counts.failed, counts.pending) == (2, 1, 2)
    assert reports[-1].failures == (("t01", "boom"),)


def test_tally_of_a_rollback_counts_down() -> None:
    tally = progress.Tally(planning.Mode.ROLLBACK, planning.Counts(total=3, applied=3, pending=3))
    for target in tenants(2):
        tally.add(outcomes.Result(target, Outcome.ROLLED_BACK))
    assert (tally.snapshot().counts.applied, tally.snapshot().counts.pending) == (1, 1)


def test_drift_found_on_the_tenant_outlives_the_pass() -> None:
    """A marker the ledger never wrote is drift the ledger cannot hold: the counts read
    from the ledger after the pass keep it, so the verdict stays Halted (not Running)."""
    targets = tenants(2)
    tally = progress.Tally(planning.Mode.APPLY, planning.Counts(total=2, pending=2))
    forged = "a marker says version 7 is applied, but the marker table is writable by PUBLIC"
    tally.add(outcomes.Result(targets[0], Outcome.DRIFT, forged))
    tally.add(outcomes.Result(targets[1], Outcome.APPLIED))
    assert tally.snapshot().failures == (("t00", forged),)
    rows = {"uid-1": ledger.Row("uid-1", ledger.State.APPLIED, checksum="c")}
    after = commands.Progress(targets, rows, "c")
    alone = planning.decide(planning.Mode.APPLY, after.counts(planning.Mode.APPLY), api.Strategy())
    assert alone.phase is api.Phase.RUNNING  # the ledger alone: one tenant still to do
    kept = after.with_drift(tally.drift)
    counts = kept.counts(planning.Mode.APPLY)
    assert (counts.applied, counts.pending, counts.drifted) == (1, 0, ["t00"])
    verdict = planning.decide(planning.Mode.APPLY, counts, api.Strategy())
    assert (verdict.phase, verdict.reason) == (api.Phase.HALTED, planning.Reason.CHECKSUM_MISMATCH)
    assert kept.failures(planning.Mode.APPLY) == [("t00", forged)]
