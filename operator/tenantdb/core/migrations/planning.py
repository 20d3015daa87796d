"""Which migrations apply to which tenant, in what order, and what a rollout's state is.

Pure logic over plain values, unit-tested without servers: label selector
matching (Kubernetes semantics), the lower versions a tenant must have
before a given version, the catch-up plan of a new tenant, canary
selection, and the phase a rollout is in given its counts.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tenantdb.api import conditions, selectors
from tenantdb.api import migrations as api


def matches(selector: selectors.LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Whether labels satisfy a label selector (none, or an empty one, selects everything)."""
    if selector is None:
        return True
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    return all(_satisfies(r, labels) for r in selector.match_expressions)


def _satisfies(requirement: selectors.SelectorRequirement, labels: Mapping[str, str]) -> bool:
    value = labels.get(requirement.key)
    operator = requirement.operator
    if operator is selectors.SelectorOperator.IN:
        return value in requirement.values
    if operator is selectors.SelectorOperator.NOT_IN:
        return value not in requirement.values
    if operator is selectors.SelectorOperator.EXISTS:
        return requirement.key in labels
    return requirement.key not in labels


@dataclass(frozen=True)
class Declared:
    """A Migration object as far as ordering and catch-up need to know it."""

    name: str
    version: int
    scope: api.Scope
    selector: selectors.LabelSelector | None
    approved: bool
    dry_run: bool
    rollback: bool
    halted: bool = False
    """The rollout stopped (failures, a canary, drift) or cannot start (an invalid
    spec): later versions, and tenants that lack this one, wait for it."""
    why: str = ""
    """What stopped it (the Ready reason of a halted Migration)."""
    established: bool = False
    """Its rollout has started (a status that is not a refusal): of two
    Migrations with one version, an established one keeps it."""
    created: str = ""
    """The object's ``creationTimestamp`` (whole seconds): otherwise the one
    created first owns the version, then the lower UID."""
    uid: str = ""

    def targets(self, labels: Mapping[str, str]) -> bool:
        """Whether this migration is meant for a tenant with these labels."""
        return self.scope is api.Scope.TENANT and matches(self.selector, labels)

    @property
    def gates(self) -> bool:
        """Whether later versions must wait for this one (dry runs and rollbacks do not gate)."""
        return not (self.dry_run or self.rollback)


def owners(declared: Iterable[Declared]) -> list[Declared]:
    """One Migration per version, in version order: the established or first created.

    A later Migration with a version already taken is refused as a
    duplicate (it never runs), so it must not count for ordering either.
    """
    first: dict[int, Declared] = {}
    for item in declared:
        held = first.get(item.version)
        if held is None or _seniority(item) < _seniority(held):
            first[item.version] = item
    return [first[version] for version in sorted(first)]


def _seniority(item: Declared) -> tuple[bool, str, str]:
    return (not item.established, item.created, item.uid)


def owner(declared: Iterable[Declared], version: int) -> Declared | None:
    """The Migration that owns ``version`` (None: no Migration has it)."""
    return next((d for d in owners(declared) if d.version == version), None)


def required_versions(
    declared: Iterable[Declared], version: int, scope: api.Scope, labels: Mapping[str, str]
) -> list[int]:
    """Lower versions that must be applied on a tenant before ``version`` may run there."""
    return sorted(
        d.version
        for d in declared
        if d.version < version
        and d.scope is scope
        and d.gates
        and (scope is api.Scope.SHARED or matches(d.selector, labels))
    )


def catch_up_plan(declared: Iterable[Declared], labels: Mapping[str, str]) -> list[Declared]:
    """What a (new) tenant must receive, in version order.

    Dry runs and rollbacks are skipped; the plan stops before the first
    migration still awaiting approval or halted, because every later
    version may depend on it.
    """
    plan: list[Declared] = []
    for item in sorted(declared, key=lambda d: d.version):
        if not item.targets(labels) or not item.gates:
            continue
        if not item.approved or item.halted:
            break
        plan.append(item)
    return plan


def holding_back(declared: Iterable[Declared], labels: Mapping[str, str]) -> Declared | None:
    """The halted Migration where a tenant's catch-up plan stops, if any.

    Every tenant it targets should have it (others may already), so a
    tenant that lacks it is not at its namespace's version. A Migration
    awaiting approval does not hold anyone back: no tenant has it yet.
    """
    for item in sorted(declared, key=lambda d: d.version):
        if not item.targets(labels) or not item.gates:
            continue
        if not item.approved:
            return None
        if item.halted:
            return item
    return None


def canaries(canary: api.Canary | None, names: Sequence[str]) -> frozenset[str]:
    """Tenant names that go first: the named ones, then ``count`` more in name order."""
    if canary is None:
        return frozenset()
    chosen = [name for name in names if name in set(canary.tenants)]
    rest = sorted(name for name in names if name not in set(chosen))
    return frozenset(chosen + rest[: canary.count])


def failure_budget(strategy: api.Strategy, failed: int) -> int | None:
    """How many more failures the rollout tolerates (None: no limit; 0: stop at the next)."""
    if strategy.failure_policy is api.FailurePolicy.HALT:
        return 0
    if strategy.max_failures == 0:
        return None
    return max(strategy.max_failures - failed, 0)


def over_budget(strategy: api.Strategy, failed: int) -> bool:
    """Whether past failures already stop the rollout."""
    if strategy.failure_policy is api.FailurePolicy.HALT:
        return failed > 0
    return strategy.max_failures > 0 and failed > strategy.max_failures


Reason = conditions.Reason


class Mode(StrEnum):
    """What a rollout does on each tenant."""

    APPLY = "apply"
    DRY_RUN = "dryRun"
    ROLLBACK = "rollback"


RETRYING_LISTED = 20
"""Retrying tenants named in status, at most."""


@dataclass(frozen=True)
class Counts:
    """Targeted tenants by state, from the ledger (and, for a dry run, from memory)."""

    total: int = 0
    applied: int = 0
    failed: int = 0
    pending: int = 0
    drifted: list[str] = field(default_factory=list)
    """Tenants where the version is applied with another checksum."""
    retrying: list[tuple[str, str]] = field(default_factory=list)
    """(tenant, reason) of pending tenants the last attempt could not finish for a
    passing reason: the tenant's lock held, a lock timeout on its own tables."""


@dataclass(frozen=True)
class Verdict:
    """The phase of a rollout and the Ready condition that goes with it."""

    phase: api.Phase
    ready: bool
    reason: str
    message: str

    @property
    def finished(self) -> bool:
        """Whether the rollout has nothing left to do until something changes."""
        return self.phase not in (api.Phase.RUNNING, api.Phase.PENDING)


def decide(
    mode: Mode,
    counts: Counts,
    strategy: api.Strategy,
    canary_failed: Sequence[str] = (),
    waiting: str = "",
) -> Verdict:
    """The phase, given counts that already include everything done so far."""
    done = f"{counts.applied}/{counts.total}"
    if counts.drifted:
        names = ", ".join(counts.drifted[:10])
        return Verdict(
            api.Phase.HALTED,
            False,
            Reason.CHECKSUM_MISMATCH,
            f"what is applied on {len(counts.drifted)} tenant(s) ({names}) is not this up "
            "(changed after it was applied, or a marker the operator did not write: see "
            "status.failures); nothing is re-applied. Revert the text, or accept it with the "
            "tenantdb.io/accept-checksum annotation (see docs/migrations.md)",
        )
    if canary_failed:
        return Verdict(
            api.Phase.HALTED,
            False,
            Reason.CANARY_FAILED,
            f"canary tenant(s) failed: {', '.join(canary_failed[:10])}; the rest were not touched",
        )
    if mode is not Mode.DRY_RUN and over_budget(strategy, counts.failed):
        policy = strategy.failure_policy.value
        return Verdict(
            api.Phase.HALTED,
            False,
            Reason.ROLLOUT_HALTED,
            f"{counts.failed} tenant(s) failed (failurePolicy {policy}, "
            f"maxFailures {strategy.max_failures}); {done} done, {counts.pending} not started",
        )
    if counts.pending:
        verb = {Mode.APPLY: "applied", Mode.DRY_RUN: "checked", Mode.ROLLBACK: "rolled back"}
        note = f"; {waiting}" if waiting else ""
        reason = Reason.ROLLING_BACK if mode is Mode.ROLLBACK else Reason.ROLLING_OUT
        finished = counts.total - counts.pending - counts.failed
        return Verdict(
            api.Phase.RUNNING,
            False,
            reason,
            f"{finished}/{counts.total} {verb[mode]}, {counts.failed} failed{note}",
        )
    return _settled(mode, counts, done)


def _settled(mode: Mode, counts: Counts, done: str) -> Verdict:
    if mode is Mode.DRY_RUN:
        if counts.failed:
            return Verdict(
                api.Phase.FAILED,
                False,
                Reason.DRY_RUN_FAILED,
                f"dry run failed on {counts.failed} of {counts.total} tenant(s); nothing was kept",
            )
        return Verdict(
            api.Phase.SUCCEEDED,
            True,
            Reason.DRY_RUN_PASSED,
            f"dry run passed on {counts.total} tenant(s); nothing was kept",
        )
    if mode is Mode.ROLLBACK:
        if counts.failed:
            return Verdict(
                api.Phase.FAILED,
                False,
                Reason.ROLLBACK_FAILED,
                f"down failed on {counts.failed} of {counts.total} tenant(s)",
            )
        return Verdict(
            api.Phase.SUCCEEDED,
            True,
            Reason.ROLLED_BACK,
            f"rolled back on {counts.total} tenant(s)",
        )
    if counts.failed:
        return Verdict(
            api.Phase.FAILED,
            False,
            Reason.MIGRATION_FAILED,
            f"{done} applied, {counts.failed} failed",
        )
    return Verdict(api.Phase.SUCCEEDED, True, Reason.APPLIED, f"{done} applied")
