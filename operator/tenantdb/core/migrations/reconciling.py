"""One reconciliation of a migration: where it stands, what may run now, and its verdict.

``reconcile`` reads the ledger for the targeted tenants (one query), runs
what may run now (canaries first, lower versions first, within the failure
budget, or ``down`` in reverse order, or a dry run) and returns a
``planning.Verdict``. Progress goes to ``report`` while tenants finish, in
batches (``progress.Tally``). It knows nothing about Kubernetes: the
controller gives it plain values and turns verdicts into status and events.
"""

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tenantdb.api import migrations as api
from tenantdb.core import commands as core_commands
from tenantdb.core import scoping
from tenantdb.core.migrations import (
    commands,
    errors,
    ledger,
    outcomes,
    planning,
    progress,
    rollout,
    scripts,
)

Mode = planning.Mode
Reason = planning.Reason
Failures = list[tuple[str, str]]
Report = Callable[[planning.Verdict, planning.Counts, Failures], None]


@dataclass(frozen=True)
class Request:
    """Everything one reconciliation needs to know about the Migration."""

    name: str
    namespace: str
    spec: api.MigrationSpec
    declared: Sequence[planning.Declared] = ()
    """The namespace's Migrations, for ordering (duplicates of a version included:
    the first created owns it, see ``planning.owners``)."""
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Labels of the namespace's Tenant objects, by UID (tenants absent here are not targeted)."""
    retry: bool = False
    """Make failed tenants eligible again first (a spec change, a retry request)."""
    accept_checksum: str | None = None
    """The drift override: accept this checksum where another was applied."""
    dry_run_done: bool = False
    """This generation's dry run already ran; report nothing new."""

    @property
    def mode(self) -> Mode:
        """What the migration asks for."""
        if self.spec.rollback:
            return Mode.ROLLBACK
        return Mode.DRY_RUN if self.spec.dry_run else Mode.APPLY


def validate(request: Request) -> scripts.Script:
    """The script, or ``InvalidScript`` saying everything wrong with the spec."""
    spec = request.spec
    first = planning.owner(request.declared, spec.version)
    if first is not None and first.name != request.name:
        raise errors.DuplicateVersion(
            f"version {spec.version} belongs to Migration {first.name}, created first; "
            "this one never runs: give it a version of its own, or delete it"
        )
    script = scripts.from_spec(request.name, spec)
    problems = script.problems()
    if spec.rollback and not spec.down:
        problems.append("rollback: true needs spec.down")
    if spec.dry_run and not spec.transactional:
        problems.append("dryRun needs transactional: true")
    if problems:
        raise errors.InvalidScript("; ".join(problems))
    return script


def reconcile(
    server: core_commands.Server,
    request: Request,
    applied_by: str,
    report: Report,
    stop: threading.Event | None = None,
    interval: float = 1.0,
    observe: Callable[[outcomes.Result], None] | None = None,
) -> planning.Verdict | None:
    """Bring the rollout forward; return its verdict (None: a finished dry run, nothing to say).

    ``observe`` sees every tenant's result as it arrives (metrics, findings).
    """
    script = validate(request)
    run = _Reconciliation(server, request, script, applied_by, report, stop, interval, observe)
    mode = request.mode
    targets = run.targets()
    if request.retry:
        commands.retry_failures(server, script.version, targets)
    if mode is Mode.DRY_RUN:
        return None if request.dry_run_done else run.dry_run(targets)
    if not request.spec.approved:
        return run.await_approval(targets)
    if mode is Mode.ROLLBACK:
        return run.rollback(targets)
    return run.apply(targets)


class _Reconciliation:
    def __init__(
        self,
        server: core_commands.Server,
        request: Request,
        script: scripts.Script,
        applied_by: str,
        report: Report,
        stop: threading.Event | None,
        interval: float,
        observe: Callable[[outcomes.Result], None] | None,
    ) -> None:
        self.server, self.request, self.script = server, request, script
        self.spec = request.spec
        self.declared = planning.owners(request.declared)
        self.applied_by, self.report, self.stop, self.interval = applied_by, report, stop, interval
        self.observe = observe

    def targets(self) -> list[scoping.TenantLocation]:
        namespace, scope = self.request.namespace, self.spec.scope
        if scope is api.Scope.SHARED or self.request.mode is Mode.ROLLBACK:
            return commands.targets(self.server, namespace, scope)
        chosen = {
            uid
            for uid, labels in self.request.labels.items()
            if planning.matches(self.spec.tenant_selector, labels)
        }
        return commands.targets(self.server, namespace, scope, chosen)

    def apply(self, targets: list[scoping.TenantLocation]) -> planning.Verdict:
        found = commands.progress(self.server, self.script, targets)
        accept = self.request.accept_checksum
        if found.counts(Mode.APPLY).drifted and accept == self.script.checksum:
            commands.accept_checksum(self.server, self.script, targets)
            found = commands.progress(self.server, self.script, targets)
        canaries = self._canaries(targets)
        verdict = self._verdict(found, canaries, "")
        if verdict.phase is api.Phase.HALTED:
            return self._done(verdict, found, Mode.APPLY)
        pending = found.pending(Mode.APPLY)
        required = {
            t.uid: planning.required_versions(
                self.declared,
                self.script.version,
                self.spec.scope,
                self.request.labels.get(t.uid, {}),
            )
            for t in pending
        }
        missing = commands.missing_versions(self.server, self.script, required)
        runnable = [t for t in pending if t.uid not in missing]
        unfinished = {u for u in canaries if found.row(u).state is not ledger.State.APPLIED}
        if unfinished - {t.uid for t in runnable}:
            runnable = [t for t in runnable if t.uid in unfinished]  # canaries go alone
        if runnable:
            failed = found.counts(Mode.APPLY).failed
            tally = self._tally(Mode.APPLY, found)
            commands.upgrade(
                self.server,
                self.script,
                runnable,
                applied_by=self.applied_by,
                policy=self._policy(failed, canaries=frozenset(unfinished)),
                requires=required,
                on_result=self._listener(tally),
                stop=self.stop,
            )
            found = commands.progress(self.server, self.script, targets).with_drift(tally.drift)
            missing = commands.missing_versions(self.server, self.script, required)
        return self._done(self._verdict(found, canaries, _waiting(missing)), found, Mode.APPLY)

    def dry_run(self, targets: list[scoping.TenantLocation]) -> planning.Verdict:
        start = planning.Counts(total=len(targets), pending=len(targets))
        tally = progress.Tally(
            Mode.DRY_RUN, start, reporter=self._reporter(Mode.DRY_RUN), interval=self.interval
        )
        commands.upgrade(
            self.server,
            self.script,
            targets,
            applied_by=self.applied_by,
            policy=rollout.Policy(max_parallel=self.spec.strategy.max_parallel),
            dry_run=True,
            on_result=self._listener(tally),
            stop=self.stop,
        )
        snapshot = tally.snapshot()
        verdict = planning.decide(Mode.DRY_RUN, snapshot.counts, self.spec.strategy)
        self.report(verdict, snapshot.counts, list(snapshot.failures))
        return verdict

    def await_approval(self, targets: list[scoping.TenantLocation]) -> planning.Verdict:
        mode = self.request.mode
        found = commands.progress(self.server, self.script, targets)
        counts = found.counts(mode)
        verb = "roll back" if mode is Mode.ROLLBACK else "apply"
        about = f" ({self.script.description})" if self.script.description else ""
        message = (
            f"waiting for approval to {verb} version {self.script.version}{about} on "
            f"{len(found.pending(mode))} of {counts.total} tenant(s), checksum "
            f"{self.script.checksum[:12]}; approve with: kubectl patch migration "
            f"""{self.request.name} --type merge -p '{{"spec":{{"approved":true}}}}'"""
        )
        verdict = planning.Verdict(
            api.Phase.AWAITING_APPROVAL, False, Reason.AWAITING_APPROVAL, message
        )
        return self._done(verdict, found, mode)

    def rollback(self, targets: list[scoping.TenantLocation]) -> planning.Verdict:
        found = commands.progress(self.server, self.script, targets)
        pending = found.pending(Mode.ROLLBACK)
        later = commands.later_versions(self.server, self.script, [t.uid for t in pending])
        rolling_back = {
            d.version for d in self.declared if d.rollback and d.scope is self.spec.scope
        }
        refused = sorted({v for versions in later.values() for v in versions} - rolling_back)
        if refused:
            names = sorted(t.name for t in pending if later.get(t.uid, set()) - rolling_back)
            message = (
                f"version(s) {', '.join(map(str, refused))} still applied on {len(names)} "
                f"tenant(s) ({', '.join(names[:10])}); roll those back first"
            )
            verdict = planning.Verdict(api.Phase.HALTED, False, Reason.ROLLBACK_BLOCKED, message)
            return self._done(verdict, found, Mode.ROLLBACK)
        runnable = [t for t in pending if t.uid not in later]
        if runnable:
            failed = found.counts(Mode.ROLLBACK).failed
            commands.downgrade(
                self.server,
                self.script,
                runnable,
                applied_by=self.applied_by,
                policy=self._policy(failed),
                on_result=self._listener(self._tally(Mode.ROLLBACK, found)),
                stop=self.stop,
            )
            found = commands.progress(self.server, self.script, targets)
        note = f"{len(later)} tenant(s) wait for later versions to roll back" if later else ""
        counts = found.counts(Mode.ROLLBACK)
        verdict = planning.decide(Mode.ROLLBACK, counts, self.spec.strategy, waiting=note)
        return self._done(verdict, found, Mode.ROLLBACK)

    def _policy(self, failed: int, canaries: frozenset[str] = frozenset()) -> rollout.Policy:
        """The strategy's parallelism, and what is left of its failure budget."""
        return rollout.Policy(
            max_parallel=self.spec.strategy.max_parallel,
            canaries=canaries,
            failure_budget=planning.failure_budget(self.spec.strategy, failed),
        )

    def _canaries(self, targets: list[scoping.TenantLocation]) -> set[str]:
        names = planning.canaries(self.spec.strategy.canary, [t.name for t in targets])
        return {t.uid for t in targets if t.name in names}

    def _verdict(
        self, found: commands.Progress, canaries: set[str], waiting: str
    ) -> planning.Verdict:
        failed_canaries = sorted(
            t.name
            for t in found.targets
            if t.uid in canaries and found.row(t.uid).state is ledger.State.FAILED
        )
        counts = found.counts(Mode.APPLY)
        return planning.decide(Mode.APPLY, counts, self.spec.strategy, failed_canaries, waiting)

    def _listener(self, tally: progress.Tally) -> rollout.Listener:
        def listen(result: outcomes.Result) -> None:
            tally.add(result)
            if self.observe is not None:
                self.observe(result)

        return listen

    def _tally(self, mode: Mode, found: commands.Progress) -> progress.Tally:
        return progress.Tally(
            mode,
            found.counts(mode),
            failures=found.failures(mode),
            reporter=self._reporter(mode),
            interval=self.interval,
        )

    def _reporter(self, mode: Mode) -> progress.Reporter:
        def report(snapshot: progress.Snapshot) -> None:
            verdict = planning.decide(mode, snapshot.counts, self.spec.strategy)
            if verdict.phase is not api.Phase.HALTED:
                verdict = planning.Verdict(
                    api.Phase.RUNNING, False, verdict.reason, verdict.message
                )
            self.report(verdict, snapshot.counts, list(snapshot.failures))

        return report

    def _done(
        self, verdict: planning.Verdict, found: commands.Progress, mode: Mode
    ) -> planning.Verdict:
        self.report(verdict, found.counts(mode), found.failures(mode))
        return verdict


def _waiting(missing: Mapping[str, list[int]]) -> str:
    if not missing:
        return ""
    versions = sorted({v for gap in missing.values() for v in gap})
    return f"{len(missing)} tenant(s) wait for version(s) {', '.join(map(str, versions))}"
