"""How many objects of one kind kopf works on at once: a bound that starts after indexing.

kopf keeps one worker (a task, its coroutines, the object's body and kopf's
state of it, some 30 KB) for every object with events in flight. A burst of
10,000 new Tenants is 10,000 workers at once, while the reconciles themselves
run a few at a time (``execution.max_workers``): hundreds of MB for objects
that only wait. kopf's ``settings.queueing.worker_limit`` bounds the workers of
each watch (one kind, one namespace or all); the others' first events wait,
unstarted, in the watch's queue (the raw event only).

The bound cannot hold from the start: with indexes, every worker of the
initial listing waits, after indexing its object, until every object of every
indexed kind is indexed, so a start with more objects than the bound stalls
for good: the first workers hold every place, the rest never start (kopf
issue 1243). So the bound is open (no limit) until the operator is indexed,
which the first handler call proves (kopf calls none before), and then holds
for every watch. A watch that starts later (a namespace matching a glob,
created after the start) with more objects already in it than the bound
would stall the same way; a namespace is empty when it is created.

``WorkerLimit`` is the value kopf gets: an ``int`` whose comparisons follow the
gate, since kopf's scheduler compares its running workers with the limit
each time it may start one.
"""

import sys
import threading
from typing import Any

import kopf

from tenantdb.api import GROUP, VERSION
from tenantdb.controllers import tenants

IDLE_TIMEOUT = 1.0
"""Seconds an idle worker waits for more events of its object before it ends and frees
its place (kopf's default, 5 s, would keep places taken behind a burst)."""


class WorkerLimit(int):
    """An ``int`` for kopf's ``worker_limit`` that compares as unlimited until ``bind()``.

    A subclass of ``int`` on the right of ``running < limit`` has its reflected
    comparison called first, so kopf's own check sees the gate.
    """

    _bound: threading.Event

    def __new__(cls, value: int) -> "WorkerLimit":
        if value < 1:
            raise ValueError(f"a worker limit must be at least 1, not {value}")
        limit = super().__new__(cls, value)
        limit._bound = threading.Event()
        return limit

    def bind(self) -> None:
        """From now on, the limit holds (the operator is indexed)."""
        self._bound.set()

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    def _effective(self) -> int:
        return int(self) if self._bound.is_set() else sys.maxsize

    def __lt__(self, other: object) -> bool:
        return self._effective() < other if isinstance(other, int) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self._effective() <= other if isinstance(other, int) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self._effective() > other if isinstance(other, int) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self._effective() >= other if isinstance(other, int) else NotImplemented

    def __eq__(self, other: object) -> bool:
        return int(self) == other

    def __hash__(self) -> int:
        return int.__hash__(self)

    def __repr__(self) -> str:
        return f"WorkerLimit({int(self)}, bound={self.bound})"


def configure(settings: kopf.OperatorSettings, memo: Any, limit: int) -> None:
    """Give kopf the gated limit, and keep it in the memo for ``bind_once_indexed``."""
    gated = WorkerLimit(limit)
    settings.queueing.worker_limit = gated
    settings.queueing.idle_timeout = IDLE_TIMEOUT
    memo["worker_limit"] = gated


@kopf.on.event(GROUP, VERSION, tenants.PLURAL)
async def bind_once_indexed(memo: Any, **_: Any) -> None:
    """The first handler call: kopf has indexed everything, so the bound may hold."""
    gated = memo.get("worker_limit")
    if isinstance(gated, WorkerLimit) and not gated.bound:
        gated.bind()
