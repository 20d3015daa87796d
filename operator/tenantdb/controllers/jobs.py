"""Long work (backups, restores, verifications) off kopf's handler threads, a few at a time.

kopf runs synchronous handlers on a shared thread pool; a pg_dump of a large
tenant would hold one of those threads for minutes. Handlers submit the
work here instead and return; the work writes its own status. One key (a
Backup's UID, a Tenant's restore) is in flight at most once per process; the
database lock each job takes keeps two processes apart.

Jobs are grouped by namespace, and a group runs at most ``per_group`` of them
at once: the rest wait in the group's queue without holding a worker, so one
namespace (many Backups, a slow storage of its own) cannot stall the others.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tenantdb.core import errors


class JobTimeout(errors.TenantDBError):
    """A job ran past ``TENANTDB_BACKUP_TIMEOUT``; what it did is undone."""

    reason = "Timeout"


def deadline(
    seconds: float,
    then: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[int], None]:
    """A progress callback that ends the job (``JobTimeout``) once ``seconds`` have passed.

    Long work reports progress chunk by chunk, so a storage or a database that
    takes ever longer still reaches this check between two chunks."""
    end = clock() + seconds

    def check(done: int) -> None:
        if clock() > end:
            raise JobTimeout(f"given up after {seconds:.0f}s (TENANTDB_BACKUP_TIMEOUT)")
        if then is not None:
            then(done)

    return check


@dataclass
class _Queued:
    key: str
    group: str
    work: Callable[[], Any]
    future: "Future[Any]"


class Jobs:
    """A bounded pool of worker threads, at most one job per key and ``per_group`` per group."""

    def __init__(self, workers: int, per_group: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenantdb-job")
        self._per_group = per_group
        self._jobs: dict[str, Future[Any]] = {}
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[_Queued]] = {}
        self._lock = threading.Lock()

    def submit(self, key: str, work: Callable[[], Any], group: str = "") -> Future[Any]:
        """Start ``work`` (or queue it behind its group's) unless a job of that key is in
        flight; return the job's future."""
        with self._lock:
            existing = self._jobs.get(key)
            if existing is not None and not existing.done():
                return existing
            job = _Queued(key, group, work, Future())
            self._jobs[key] = job.future
            if self._running.get(group, 0) < self._per_group:
                self._start(job)
            else:
                self._waiting.setdefault(group, deque()).append(job)
        return job.future

    def get(self, key: str) -> Future[Any] | None:
        """The job of that key, queued, in flight or finished, if this process has one."""
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: str) -> None:
        """Drop a finished job's result."""
        with self._lock:
            future = self._jobs.get(key)
            if future is not None and future.done():
                del self._jobs[key]

    def close(self) -> None:
        """Stop taking work; jobs in flight finish (their status says if they did not)."""
        with self._lock:
            for queue in self._waiting.values():
                for job in queue:
                    job.future.cancel()
            self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, job: _Queued) -> None:
        """Run ``job`` on a worker (the lock is held)."""
        if not job.future.set_running_or_notify_cancel():
            return
        self._running[job.group] = self._running.get(job.group, 0) + 1
        try:
            self._executor.submit(self._run, job)
        except RuntimeError:  # shutting down: nothing more runs
            self._running[job.group] -= 1
            job.future.set_exception(RuntimeError("the operator is stopping"))

    def _run(self, job: _Queued) -> None:
        try:
            job.future.set_result(job.work())
        except BaseException as exc:  # the future carries it to whoever asks
            job.future.set_exception(exc)
        finally:
            with self._lock:
                self._running[job.group] -= 1
                queue = self._waiting.get(job.group)
                if queue:
                    self._start(queue.popleft())
