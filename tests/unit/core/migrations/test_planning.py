"""Selectors, ordering, catch-up plans, canaries and rollout verdicts."""

import pytest

from tenantdb.api import migrations as api
from tenantdb.api import selectors
from tenantdb.core.migrations import planning

Op = selectors.SelectorOperator


def selector(
    labels: dict[str, str] | None = None, *exprs: tuple[str, Op, list[str]]
) -> selectors.LabelSelector:
    return selectors.LabelSelector(
        match_labels=labels or {},
        match_expressions=[
            selectors.SelectorRequirement(key=k, operator=o, values=v) for k, o, v in exprs
        ],
    )


@pytest.mark.parametrize(
    ("chosen", "labels", "expected"),
    [
        (None, {}, True),
        (selector(), {"tier": "gold"}, True),
        (selector({"tier": "gold"}), {"tier": "gold", "region": "eu"}, True),
        (selector({"tier": "gold"}), {"tier": "free"}, False),
        (selector(None, ("tier", Op.IN, ["gold", "silver"])), {"tier": "silver"}, True),
        (selector(None, ("tier", Op.IN, ["gold"])), {}, False),
        (selector(None, ("tier", Op.NOT_IN, ["free"])), {}, True),
        (selector(None, ("tier", Op.NOT_IN, ["free"])), {"tier": "free"}, False),
        (selector(None, ("beta", Op.EXISTS, [])), {"beta": ""}, True),
        (selector(None, ("beta", Op.DOES_NOT_EXIST, [])), {"beta": "1"}, False),
        (selector({"a": "1"}, ("b", Op.EXISTS, [])), {"a": "1"}, False),
    ],
)
def test_label_selectors_follow_kubernetes(
    chosen: selectors.LabelSelector | None, labels: dict[str, str], expected: bool
) -> None:
    assert planning.matches(chosen, labels) is expected


def declared(version: int, **fields: object) -> planning.Declared:
    values: dict[str, object] = {
        "name": f"m{version}",
        "version": version,
        "scope": api.Scope.TENANT,
        "selector": None,
        "approved": True,
        "dry_run": False,
        "rollback": False,
        **fields,
    }
    return planning.Declared(**values)  # type: ignore[arg-type]


def test_required_versions_are_the_lower_ones_that_target_the_tenant() -> None:
    items = [
        declared(1),
        declared(2, selector=selector({"tier": "gold"})),
        declared(3, dry_run=True),
        declared(4, rollback=True),
        declared(5, scope=api.Scope.SHARED),
        declared(6, approved=False),
        declared(9),
    ]
    assert planning.required_versions(items, 7, api.Scope.TENANT, {"tier": "free"}) == [1, 6]
    assert planning.required_versions(items, 7, api.Scope.TENANT, {"tier": "gold"}) == [1, 2, 6]
    assert planning.required_versions(items, 7, api.Scope.SHARED, {}) == [5]


def test_catch_up_skips_dry_runs_and_rollbacks_and_stops_at_unapproved_or_halted() -> None:
    items = [declared(3), declared(1), declared(2, dry_run=True), declared(4, rollback=True)]
    assert [d.version for d in planning.catch_up_plan(items, {})] == [1, 3]
    gated = [*items, declared(5, approved=False), declared(6)]
    assert [d.version for d in planning.catch_up_plan(gated, {})] == [1, 3]
    halted = [*items, declared(5, halted=True), declared(6)]
    assert [d.version for d in planning.catch_up_plan(halted, {})] == [1, 3]
    other = [*items, declared(5, selector=selector({"tier": "gold"}), approved=False), declared(6)]
    assert [d.version for d in planning.catch_up_plan(other, {"tier": "free"})] == [1, 3, 6]


def test_canaries_are_named_first_then_counted_in_name_order() -> None:
    names = ["delta", "alpha", "charlie", "bravo"]
    assert planning.canaries(None, names) == frozenset()
    assert planning.canaries(api.Canary(tenants=["delta", "ghost"]), names) == {"delta"}
    assert planning.canaries(api.Canary(tenants=["delta"], count=2), names) == {
        "delta",
        "alpha",
        "bravo",
    }


@pytest.mark.parametrize(
    ("policy", "max_failures", "failed", "budget", "over"),
    [
        (api.FailurePolicy.HALT, 0, 0, 0, False),
        (api.FailurePolicy.HALT, 5, 1, 0, True),
        (api.FailurePolicy.CONTINUE, 0, 40, None, False),
        (api.FailurePolicy.CONTINUE, 3, 1, 2, False),
        (api.FailurePolicy.CONTINUE, 3, 3, 0, False),
        (api.FailurePolicy.CONTINUE, 3, 4, 0, True),
    ],
)
def test_failure_budget(
    policy: api.FailurePolicy, max_failures: int, failed: int, budget: int | None, over: bool
) -> None:
    strategy = api.Strategy(failure_policy=policy, max_failures=max_failures)
    assert planning.failure_budget(strategy, failed) == budget
    assert planning.over_budget(strategy, failed) is over


HALT = api.Strategy()
CONTINUE = api.Strategy(failure_policy=api.FailurePolicy.CONTINUE)
APPLY = planning.Mode.APPLY


@pytest.mark.parametrize(
    ("mode", "counts", "strategy", "phase", "reason"),
    [
        (APPLY, planning.Counts(3, 3, 0, 0), HALT, api.Phase.SUCCEEDED, "Applied"),
        (APPLY, planning.Counts(3, 1, 0, 2), HALT, api.Phase.RUNNING, "RollingOut"),
        (APPLY, planning.Counts(3, 1, 1, 1), HALT, api.Phase.HALTED, "RolloutHalted"),
        (APPLY, planning.Counts(3, 1, 1, 1), CONTINUE, api.Phase.RUNNING, "RollingOut"),
        (APPLY, planning.Counts(3, 2, 1, 0), CONTINUE, api.Phase.FAILED, "MigrationFailed"),
        (APPLY, planning.Counts(3, 3, 0, 0, ["a"]), HALT, api.Phase.HALTED, "ChecksumMismatch"),
        (
            planning.Mode.DRY_RUN,
            planning.Counts(2, 1, 1, 0),
            HALT,
            api.Phase.FAILED,
            "DryRunFailed",
        ),
        (
            planning.Mode.DRY_RUN,
            planning.Counts(2, 2, 0, 0),
            HALT,
            api.Phase.SUCCEEDED,
            "DryRunPassed",
        ),
        (
            planning.Mode.ROLLBACK,
            planning.Counts(2, 0, 0, 0),
            HALT,
            api.Phase.SUCCEEDED,
            "RolledBack",
        ),
        (
            planning.Mode.ROLLBACK,
            planning.Counts(2, 1, 0, 1),
            HALT,
            api.Phase.RUNNING,
            "RollingBack",
        ),
    ],
)
def test_verdicts(
    mode: planning.Mode,
    counts: planning.Counts,
    strategy: api.Strategy,
    phase: api.Phase,
    reason: str,
) -> None:
    verdict = planning.decide(mode, counts, strategy)
    assert (verdict.phase, verdict.reason) == (phase, reason)
    assert verdict.ready is (phase is api.Phase.SUCCEEDED)


def test_a_failed_canary_halts_whatever_the_policy() -> None:
    verdict = planning.decide(APPLY, planning.Counts(5, 0, 1, 4), CONTINUE, canary_failed=["a"])
    assert (verdict.phase, verdict.reason) == (api.Phase.HALTED, "CanaryFailed")
    assert "a" in verdict.message


def test_the_first_created_migration_owns_its_version() -> None:
    first = declared(1, name="first", created="2026-01-01T10:00:00Z", uid="b")
    later = declared(1, name="later", created="2026-01-01T10:00:05Z", uid="a")
    same_second = declared(1, name="twin", created="2026-01-01T10:00:00Z", uid="c")
    other = declared(2, created="2026-01-02T00:00:00Z")
    assert planning.owners([later, other, same_second, first]) == [first, other]
    assert planning.owner([later, first], 1) == first
    assert planning.owner([later], 1) == later
    assert planning.owner([first], 2) is None


def test_a_halted_migration_holds_back_the_tenants_it_targets() -> None:
    halted = declared(2, halted=True, why="ChecksumMismatch")
    assert planning.holding_back([declared(1), halted, declared(3)], {}) == halted
    assert planning.holding_back([declared(1), declared(3)], {}) is None
    gold_only = declared(2, halted=True, selector=selector({"tier": "gold"}))
    assert planning.holding_back([gold_only], {"tier": "free"}) is None
    assert planning.holding_back([declared(1, approved=False), halted], {}) is None
    assert planning.holding_back([declared(2, halted=True, rollback=True)], {}) is None


def test_an_established_migration_keeps_its_version_within_the_same_second() -> None:
    running = declared(1, name="running", created="2026-01-01T10:00:00Z", uid="z", established=True)
    newcomer = declared(1, name="newcomer", created="2026-01-01T10:00:00Z", uid="a")
    assert planning.owner([newcomer, running], 1) == running
