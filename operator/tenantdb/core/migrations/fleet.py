"""One Migration across several servers: a reconciliation per server, at once, as one report.

Each server keeps its own tenants' ledger, so each reconciles its own part
(``reconciling.reconcile``, with the strategy's parallelism on each server)
on a thread of its own: a slow or unreachable server holds up only its part.
The parts' reports are summed into the one status the Migration shows: a
halted part or one awaiting approval speaks for the whole; an unreachable
server keeps the rollout unfinished and is named; otherwise the phase is
decided on the summed counts, so ``maxFailures`` counts failures on every
server together (each server's part stops at the budget it has seen).
Progress is passed on as it comes; a settled sum only once every server's
part has spoken, so that no part alone calls finished what the others have
not done (an operator restarted on a finished rollout writes nothing).
"""

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tenantdb.api import migrations as api
from tenantdb.core import commands as core_commands
from tenantdb.core import errors
from tenantdb.core.migrations import outcomes, planning, reconciling

UNAVAILABLE = "ServerUnavailable"


@dataclass
class _Parts:
    """The latest report of each server's part, summed on every change."""

    mode: planning.Mode
    strategy: api.Strategy
    report: reconciling.Report
    reports: dict[str, tuple[planning.Verdict, planning.Counts, reconciling.Failures]] = field(
        default_factory=dict
    )
    unreachable: dict[str, str] = field(default_factory=dict)
    expected: frozenset[str] = frozenset()
    """Every server with a part (``emit``)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reporter(self, server: str) -> reconciling.Report:
        def report(
            verdict: planning.Verdict, counts: planning.Counts, failures: reconciling.Failures
        ) -> None:
            with self.lock:
                self.reports[server] = (verdict, counts, failures)
            self.emit()

        return report

    def lost(self, server: str, problem: errors.TenantDBError) -> None:
        with self.lock:
            self.reports.pop(server, None)
            self.unreachable[server] = str(problem)

    def emit(self, final: bool = False) -> planning.Verdict:
        """Pass the sum on: progress at once, a settled sum only once every part has
        spoken (or at the ``final`` call), so that the servers already done do not call
        finished what the others have not reported yet."""
        with self.lock:
            verdict, counts, failures = self.combined()
            spoken = self.expected <= set(self.reports) | set(self.unreachable)
        if final or spoken or verdict.phase is api.Phase.RUNNING:
            self.report(verdict, counts, failures)
        return verdict

    def combined(self) -> tuple[planning.Verdict, planning.Counts, reconciling.Failures]:
        parts = list(self.reports.values())
        counts = planning.Counts(
            total=sum(c.total for _, c, _ in parts),
            applied=sum(c.applied for _, c, _ in parts),
            failed=sum(c.failed for _, c, _ in parts),
            pending=sum(c.pending for _, c, _ in parts),
            drifted=[name for _, c, _ in parts for name in c.drifted],
            retrying=[item for _, c, _ in parts for item in c.retrying]
            + [(f"server {name}", why) for name, why in sorted(self.unreachable.items())],
        )
        failures = [item for _, _, f in parts for item in f]
        for phase in (api.Phase.HALTED, api.Phase.AWAITING_APPROVAL):
            speaking = [v for v, _, _ in parts if v.phase is phase]
            if speaking:
                return speaking[0], counts, failures
        if self.unreachable:
            names = ", ".join(sorted(self.unreachable))
            message = (
                f"server(s) {names} unreachable, their tenants wait; "
                f"{counts.applied}/{counts.total} done on the others"
            )
            return (
                planning.Verdict(api.Phase.RUNNING, False, UNAVAILABLE, message),
                counts,
                failures,
            )
        return planning.decide(self.mode, counts, self.strategy), counts, failures


def reconcile(
    servers: Mapping[str, core_commands.Server],
    request: reconciling.Request,
    applied_by: str,
    report: reconciling.Report,
    stop: threading.Event | None = None,
    interval: float = 1.0,
    observe: Callable[[outcomes.Result], None] | None = None,
    missing: Mapping[str, str] | None = None,
) -> planning.Verdict | None:
    """``reconciling.reconcile`` on every server in ``servers``; their verdicts as one.
    ``missing``: servers the namespace's tenants live on that are not connected (why)."""
    if len(servers) == 1 and not missing:
        (server,) = servers.values()
        return reconciling.reconcile(server, request, applied_by, report, stop, interval, observe)
    parts = _Parts(request.mode, request.spec.strategy, report, expected=frozenset(servers))
    parts.unreachable.update(missing or {})
    with ThreadPoolExecutor(max(len(servers), 1), thread_name_prefix="tenantdb-fleet") as pool:
        futures = {
            name: pool.submit(
                reconciling.reconcile,
                server,
                request,
                applied_by,
                parts.reporter(name),
                stop,
                interval,
                observe,
            )
            for name, server in servers.items()
        }
        verdicts = {}
        for name, future in futures.items():
            try:
                verdicts[name] = future.result()
            except errors.TenantDBError as exc:
                if exc.permanent and not isinstance(exc, errors.DatabaseUnavailable):
                    raise
                parts.lost(name, exc)
    if all(v is None for v in verdicts.values()) and not parts.unreachable:
        return None  # a finished dry run everywhere: nothing new to say
    return parts.emit(final=True)
