"""Reconcile a Tenant again later without keeping kopf busy with it meanwhile.

kopf retries a handler that raised ``TemporaryError(delay=...)`` by sleeping
in the object's worker for the delay, then writing a touch. While it sleeps
the worker holds the object's body and kopf's state of it (tens of KB), and
a wait can last: a server that is down, a halted Migration the tenant must
not pass, a restore. Thousands of tenants waiting so hold as many workers
and write a touch each every ``retry_delay``, for as long as the wait lasts.
(kopf's ``worker_limit``, set in ``startup``, bounds the workers; a waiting
one would hold a place of that bound for as long as it waits.)

So a Tenant's reconcile that must wait returns (its status says why) and
hands the tenant to ``Requeue``: one thread, one heap entry per waiting
tenant, which at the due time writes a new value into the tenant's
``status.operator.requeue``. That field is part of what kopf compares
(``persistence.CompactDiffBaseStorage``), so kopf sees a change and the
reconcile runs again. Repeated waits back off (``retry_delay`` doubled up to
``BACKOFF_LIMIT`` times it); a reconcile that gets through forgets the tenant.
An operator restarted meanwhile loses the heap and loses nothing: kopf
resumes every object at start.
"""

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenantdb.api import GROUP, VERSION
from tenantdb.controllers import kube

_LOG = logging.getLogger(__name__)

BACKOFF_LIMIT = 6
"""The longest wait between two attempts, in ``retry_delay``s."""


@dataclass(frozen=True, order=True)
class Ref:
    """The object to reconcile again."""

    namespace: str
    plural: str
    name: str
    uid: str


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    ref: Ref = field(compare=False)


class Requeue:
    """The waiting objects, by due time; a daemon thread wakes each one when due."""

    def __init__(self, base_delay: float, wake: Callable[[Ref], None] | None = None) -> None:
        self.base_delay = base_delay
        self._wake = wake or _wake
        self._heap: list[_Due] = []
        self._due: dict[str, float] = {}
        self._attempts: dict[str, int] = {}
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def later(self, ref: Ref, first: float) -> float:
        """Reconcile ``ref`` again: after ``first`` seconds the first time, twice as long
        after each wait that follows, at most ``BACKOFF_LIMIT`` retry delays. The seconds."""
        with self._changed:
            attempt = self._attempts.get(ref.uid, 0)
            self._attempts[ref.uid] = attempt + 1
            delay = min(first * 2.0**attempt, max(first, self.base_delay * BACKOFF_LIMIT))
            self._schedule(ref, delay)
        return delay

    def _schedule(self, ref: Ref, delay: float) -> None:
        at = time.monotonic() + delay
        with self._changed:
            if ref.uid in self._due and self._due[ref.uid] <= at:
                return  # due sooner already
            self._due[ref.uid] = at
            heapq.heappush(self._heap, _Due(at, next(self._seq), ref))
            self._changed.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tenantdb-requeue", daemon=True
                )
                self._thread.start()

    def forget(self, uid: str) -> None:
        """The object got through (or is gone): no wake-up, and its backoff starts over."""
        with self._changed:
            self._due.pop(uid, None)
            self._attempts.pop(uid, None)

    def waiting(self) -> int:
        """Objects with a wake-up pending."""
        with self._changed:
            return len(self._due)

    def _run(self) -> None:
        while True:
            ref = self._next()
            try:
                self._wake(ref)
            except kube.ApiError as exc:
                if exc.status == 404:  # gone, or another object of that name now
                    self.forget(ref.uid)
                    continue
                if exc.status != 409:  # 409: it moved between the read and the write
                    _LOG.warning(
                        "could not wake %s/%s, again soon: %s", ref.namespace, ref.name, exc
                    )
                self._schedule(
                    ref, min(self.base_delay, 1.0) if exc.status == 409 else self.base_delay
                )
            except Exception:  # the thread must outlive any one object's trouble
                _LOG.exception("could not wake %s/%s, again later", ref.namespace, ref.name)
                self._schedule(ref, self.base_delay)

    def _next(self) -> Ref:
        """Wait for the earliest due wake-up that is still wanted; take it."""
        with self._changed:
            while True:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0].ref.uid) != self._heap[0].at:
                    heapq.heappop(self._heap)  # forgotten, or moved sooner
                if self._heap and self._heap[0].at <= now:
                    due = heapq.heappop(self._heap)
                    del self._due[due.ref.uid]
                    return due.ref
                self._changed.wait(self._heap[0].at - now if self._heap else None)


def _wake(ref: Ref) -> None:
    """A new value where kopf compares: the change makes it reconcile the object.

    Only the object that waited: one deleted and made again under its name since is
    not it (404, as if gone; a status patch cannot take the UID as a precondition, so it
    is read first, and written only at the version read: 409 if it moved meanwhile)."""
    found = kube.read_custom_object(GROUP, VERSION, ref.namespace, ref.plural, ref.name)
    if found is None or found["metadata"].get("uid") != ref.uid:
        raise kube.ApiError(404, "NotFound", f"{ref.namespace}/{ref.name} is gone")
    stamp = {"operator": {REQUEUE: f"{time.time():.3f}"}}
    version = str(found["metadata"]["resourceVersion"])
    kube.patch_custom_status(GROUP, VERSION, ref.namespace, ref.plural, ref.name, stamp, version)


REQUEUE = "requeue"
"""The field of ``status.operator`` a wake-up writes."""
MEMO_KEY = "requeue"


def of(memo: Any) -> Requeue:
    """The process's ``Requeue`` (``install`` put it in the operator's memo at start)."""
    found = memo.get(MEMO_KEY)
    if not isinstance(found, Requeue):
        raise RuntimeError("requeue.install was not called at start-up")
    return found


def install(memo: Any, base_delay: float) -> Requeue:
    """One ``Requeue`` for the process, in the memo before any object is seen (kopf
    copies the memo into each object's then)."""
    waits = Requeue(base_delay)
    memo[MEMO_KEY] = waits
    return waits
