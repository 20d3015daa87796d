"""Operator start-up and shutdown: settings, kopf's own settings, connecting, the watchdog.

kopf's annotations get a ``tenantdb.io`` prefix, its finalizer is ours, and
watches have explicit timeouts (silent, frozen watch streams are a known
failure of long-running operators).
"""

import logging
import threading
from typing import Any

import kopf
import prometheus_client

from tenantdb import settings as settings_
from tenantdb.api import GROUP
from tenantdb.controllers import (
    caches,
    kube,
    patrolling,
    persistence,
    readiness,
    reporting,
    requeue,
    runtime,
    surveying,
)
from tenantdb.core import errors

FINALIZER = f"{GROUP}/finalizer"
STATE_PREFIX = f"operator.{GROUP}"
"""kopf's own annotations. Not plain ``tenantdb.io``: kopf ignores changes to
annotations under its prefix, and users annotate under ``tenantdb.io/``."""
MAX_RETRY_DELAY = 30.0
"""Seconds between two start-up attempts at most (the delay grows by ``retry_delay``)."""
WORKER_LIMIT = 256
"""kopf's workers per watched kind at most: a burst of new objects waits in the watch
stream instead of holding a worker (its body, queue and coroutines) each."""
WORKER_IDLE = 1.0
"""Seconds a kopf worker with no events left waits before it ends and frees its place."""
_LOG = logging.getLogger("tenantdb.startup")


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Parse settings once, configure kopf, then connect in the background.

    The start-up database work (``Runtime.start``) is retried on a thread of
    its own until it succeeds, so an unreachable server or a missing
    privilege leaves the process alive (kopf's liveness answers) but not
    ready, saying why in the log and on the readiness endpoint; handlers
    wait for it (``runtime.of``)."""
    config = settings_.Settings.from_environment()
    configure_kopf(settings, config)
    waits = requeue.install(memo, config.watch.retry_delay)
    reporting.TENANTS_WAITING.set_function(waits.waiting)
    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port)
    state = memo.get("readiness")
    memo["connector"] = Connector(
        config,
        memo,
        runtime.Slot.install(memo),
        state if isinstance(state, readiness.Readiness) else readiness.Readiness(),
    )
    memo["connector"].start()


@kopf.on.cleanup()
def stop(memo: Any, **_: Any) -> None:
    """Stop connecting and the watchdog, then close database connections."""
    connector = memo.get("connector")
    if isinstance(connector, Connector):
        connector.stop()
    patrol = memo.get("patrol")
    if isinstance(patrol, patrolling.Patrol):
        patrol.stop()
    surveyor = memo.get("surveyor")
    if isinstance(surveyor, surveying.Surveyor):
        surveyor.stop()
    current = runtime.current(memo)
    if current is not None:
        current.close()


class Connector:
    """Retries the start-up database work until it succeeds, then starts the background work."""

    def __init__(
        self,
        config: settings_.Settings,
        memo: Any,
        slot: runtime.Slot,
        state: readiness.Readiness,
    ) -> None:
        self.config, self.memo, self.slot, self.readiness = config, memo, slot, state
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenantdb-connect", daemon=True)

    def start(self) -> None:
        """Begin connecting in the background."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Give up connecting (a runtime started meanwhile is closed by the thread itself)."""
        self._stopping.set()
        self.slot.publish(None)  # no handler waits for an attempt that will not come
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            try:
                started = self._start_runtime()
            except kube.ApiError as exc:
                self._failed(attempt, f"listing objects: {exc}")
                continue
            except errors.TenantDBError as exc:
                self._failed(attempt, f"{exc.reason}: {exc}")
                continue
            except Exception as exc:  # an unforeseen failure must not end the retries either
                _LOG.exception("start-up database work failed (attempt %d)", attempt)
                self._failed(attempt, f"{type(exc).__name__}: {exc}", logged=True)
                continue
            if self._stopping.is_set():
                started.close()
                return
            self.slot.publish(started)
            self.memo["patrol"] = patrolling.start(started)
            self.memo["surveyor"] = surveying.start(started)
            self.readiness.started(started.pool)
            _LOG.info("tenantdb operator started (environment=%s)", self.config.environment.value)
            return

    def _start_runtime(self) -> runtime.Runtime:
        """The database first (its problems are the ones to report), then the caches
        (a listing that fails closes the runtime it would have served)."""
        started = runtime.Runtime.start(self.config)
        try:
            caches.seed(self.config.watch.namespace)
        except BaseException:
            started.close()
            raise
        return started

    def _failed(self, attempt: int, problem: str, logged: bool = False) -> None:
        delay = min(self.config.watch.retry_delay * attempt, MAX_RETRY_DELAY)
        self.readiness.waiting(problem)
        self.slot.publish(None)
        if not logged:
            _LOG.error("not ready: %s; retrying in %.0fs (attempt %d)", problem, delay, attempt)
        self._stopping.wait(delay)


def configure_kopf(settings: kopf.OperatorSettings, config: settings_.Settings) -> None:
    """Persistence under our prefix (small whatever the spec), bounded watches,
    quiet event posting."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = persistence.BoundedProgressStorage(prefix=STATE_PREFIX)
    settings.persistence.diffbase_storage = persistence.CompactDiffBaseStorage(
        prefix=STATE_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = config.watch.server_timeout
    settings.watching.client_timeout = config.watch.client_timeout
    settings.watching.connect_timeout = 30
    # kopf's first listing at a (re)start a page at a time, as the operator's own lists:
    # at 10,000 Tenants one answer would be some 33 MB of JSON decoded at once.
    settings.watching.chunk_size = kube.PAGE
    settings.posting.level = logging.INFO
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = WORKER_IDLE
    # A handler holds up to two of the pool's connections at once (a tenant's lock
    # and a write that must commit on its own), so the pool serves half as many.
    settings.execution.max_workers = max(config.database.pool_max_size // 2, 2)
