"""The statement watchdog's thread in the operator process: tick, count, tell the Tenant.

``core.watchdog`` decides and signals, with one query per tick for every
tenant. This module only runs it every ``watchdog.interval`` seconds on a
thread of its own, counts each action in
``tenantdb_watchdog_actions_total{action}`` and posts a Warning event on the
Tenant naming the durations and the plan, never the statement (its text may
hold secrets). The startup handler starts it, the cleanup handler stops it;
it never touches the database itself.
"""

import logging
import threading
from collections.abc import Callable

from tenantdb.api import API_VERSION, conditions
from tenantdb.controllers import kube, logs, reporting, runtime
from tenantdb.core import errors, watchdog

logger = logging.getLogger("tenantdb.watchdog")

REASONS = {
    watchdog.Action.CANCEL: conditions.Reason.STATEMENT_CANCELLED,
    watchdog.Action.TERMINATE: conditions.Reason.SESSION_TERMINATED,
}


class Patrol:
    """One thread ticking one ``Watchdog`` until stopped."""

    def __init__(
        self, rt: runtime.Runtime, make_dog: Callable[[], watchdog.Watchdog], interval: float
    ) -> None:
        self.rt = rt
        self.make_dog = make_dog
        self.dogs: dict[str, watchdog.Watchdog] = {}
        """One watchdog per server: each remembers what it signalled there."""
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenantdb-watchdog", daemon=True)

    def start(self) -> None:
        """Begin ticking in the background."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current tick and end the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def tick(self) -> list[watchdog.Verdict]:
        """Look once at every server, act, and report what was done."""
        done: list[watchdog.Verdict] = []
        for member in self.rt.servers.members():
            dog = self.dogs.setdefault(member.name, self.make_dog())
            try:
                done.extend(dog.tick(member.server.pool))
            except errors.TenantDBError as exc:
                logger.warning("watchdog tick on server %s failed: %s", member.name, exc)
        for verdict in done:
            report(verdict)
        return done

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                if self.rt.leadership.active():
                    self.tick()
            except Exception:
                # A dead thread would stop enforcing every plan in silence: log, keep going.
                logger.exception("watchdog tick crashed")


def report(verdict: watchdog.Verdict) -> None:
    """Count the action and post it on the Tenant as a Warning event."""
    reporting.WATCHDOG_ACTIONS.labels(action=verdict.action.value).inc()
    statement = verdict.statement
    message = watchdog.describe(verdict)
    about = logs.about("Tenant", statement.namespace, statement.name, statement.uid)
    about.warning("%s", message)
    involved = {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "namespace": statement.namespace,
        "name": statement.name,
        "uid": statement.uid,
    }
    try:
        kube.post_event(involved, "Warning", REASONS[verdict.action], message)
    except kube.ApiError as exc:
        about.warning("could not post the watchdog's event: %s", exc.reason)


def start(rt: runtime.Runtime) -> Patrol | None:
    """Start the watchdog with the operator's plans, or None if it is turned off."""
    config = rt.settings.watchdog
    for action in watchdog.Action:  # both series exist from the start, at 0
        reporting.WATCHDOG_ACTIONS.labels(action=action.value)
    if config.interval <= 0:
        logger.info("statement watchdog turned off (TENANTDB_WATCHDOG_INTERVAL=0)")
        return None
    limits, unreadable = watchdog.statement_limits(rt.settings.plans)
    for plan in unreadable:
        logger.error(
            "plan %s: statement_timeout %r is not a PostgreSQL duration; not enforced",
            plan,
            rt.settings.plans[plan].statement_timeout,
        )

    def make_dog() -> watchdog.Watchdog:
        return watchdog.Watchdog(rt.control_schema, limits, config.grace, config.terminate_grace)

    patrol = Patrol(rt, make_dog, config.interval)
    patrol.start()
    return patrol
