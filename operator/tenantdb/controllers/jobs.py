"""Long work (backups, restores, verifications) off kopf's handler threads, a few at a time.

kopf runs synchronous handlers on a shared thread pool; a pg_dump of a large
tenant would hold one of those threads for minutes. Handlers submit the
work here instead and return; the work writes its own status. One key (a
Backup's UID, a Tenant's restore) is in flight at most once per process; the
database lock each job takes keeps two processes apart.
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Jobs:
    """A bounded pool of worker threads with at most one job per key."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenantdb-job")
        self._running: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()

    def submit(self, key: str, work: Callable[[], Any]) -> Future[Any]:
        """Start ``work`` unless a job of that key is in flight; return the job's future."""
        with self._lock:
            running = self._running.get(key)
            if running is not None and not running.done():
                return running
            future = self._executor.submit(work)
            self._running[key] = future
        return future

    def get(self, key: str) -> Future[Any] | None:
        """The job of that key, in flight or finished, if this process ran one."""
        with self._lock:
            return self._running.get(key)

    def forget(self, key: str) -> None:
        """Drop a finished job's result."""
        with self._lock:
            future = self._running.get(key)
            if future is not None and future.done():
                del self._running[key]

    def close(self) -> None:
        """Stop taking work; jobs in flight finish (their status says if they did not)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
