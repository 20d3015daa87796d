"""How the parts of a rollout on several servers add up to one status (pure)."""

from tenantdb.api import migrations as api
from tenantdb.core import errors
from tenantdb.core.migrations import fleet, planning

STRATEGY = api.Strategy()


def parts(
    *reports: tuple[str, planning.Verdict, planning.Counts],
) -> tuple[fleet._Parts, list[tuple[planning.Verdict, planning.Counts]]]:
    seen: list[tuple[planning.Verdict, planning.Counts]] = []
    combined = fleet._Parts(planning.Mode.APPLY, STRATEGY, lambda v, c, f: seen.append((v, c)))
    for server, verdict, counts in reports:
        combined.reporter(server)(verdict, counts, [(f"{server}-tenant", "boom")])
    return combined, seen


def running(applied: int, total: int) -> tuple[planning.Verdict, planning.Counts]:
    counts = planning.Counts(total=total, applied=applied, pending=total - applied)
    return planning.decide(planning.Mode.APPLY, counts, STRATEGY), counts


def test_counts_and_failures_add_up_and_the_phase_follows_the_sum() -> None:
    first, second = running(2, 2), running(1, 3)
    combined, seen = parts(("default", *first), ("east", *second))
    verdict, counts, failures = combined.combined()
    assert (counts.total, counts.applied, counts.pending) == (5, 3, 2)
    assert verdict.phase is api.Phase.RUNNING and "3/5" in verdict.message
    assert failures == [("default-tenant", "boom"), ("east-tenant", "boom")]
    assert len(seen) == 2  # every part's report is passed on, summed


def test_a_halted_part_speaks_for_the_whole() -> None:
    halted = planning.Verdict(api.Phase.HALTED, False, "CanaryFailed", "canary failed")
    combined, _ = parts(("default", *running(2, 2)), ("east", halted, planning.Counts(total=1)))
    assert combined.combined()[0] is halted


def test_an_unreachable_server_keeps_the_rollout_unfinished_and_is_named() -> None:
    combined, _ = parts(("default", *running(2, 2)))
    combined.lost("east", errors.DatabaseUnavailable("connection refused"))
    verdict, counts, _ = combined.combined()
    assert verdict.phase is api.Phase.RUNNING and verdict.reason == fleet.UNAVAILABLE
    assert "east" in verdict.message and "2/2 done on the others" in verdict.message
    assert ("server east", "connection refused") in counts.retrying


def test_every_part_done_is_done() -> None:
    combined, _ = parts(("default", *running(2, 2)), ("east", *running(1, 1)))
    assert combined.combined()[0].phase is api.Phase.SUCCEEDED


def test_a_settled_sum_waits_for_every_server_progress_does_not() -> None:
    seen: list[planning.Verdict] = []
    combined = fleet._Parts(
        planning.Mode.APPLY, STRATEGY, lambda v, c, f: seen.append(v), expected=frozenset("ab")
    )
    combined.reporter("a")(*running(2, 2), [])
    assert seen == []  # "a" alone would say Succeeded for both
    combined.reporter("a")(*running(1, 3), [])
    assert [v.phase for v in seen] == [api.Phase.RUNNING]  # progress goes out at once
    combined.reporter("a")(*running(3, 3), [])
    combined.reporter("b")(*running(1, 1), [])
    assert [v.phase for v in seen] == [api.Phase.RUNNING, api.Phase.SUCCEEDED]
