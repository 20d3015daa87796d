"""The worker bound: unlimited until the operator is indexed, then held by kopf's own
scheduler (the real one, so a kopf upgrade that compares differently fails here)."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotasks

from tenantdb.controllers import inflight


def test_the_limit_compares_as_unlimited_until_bound() -> None:
    limit = inflight.WorkerLimit(2)
    # kopf's form, the running count on the left: the reflected comparison decides.
    assert operator.lt(10_000, limit) and limit > 10_000 and not limit <= 10_000
    limit.bind()
    assert not operator.lt(2, limit) and operator.lt(1, limit) and 2 <= limit <= 2
    assert limit == 2 and int(limit) == 2 and "bound=True" in repr(limit)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        inflight.WorkerLimit(0)


async def _running_at_once(limit: inflight.WorkerLimit, jobs: int, bind_after: int) -> list[int]:
    """How many of ``jobs`` workers run at once in kopf's scheduler, sampled as each
    starts; the limit is bound once ``bind_after`` have started."""
    release = asyncio.Event()
    running = 0
    seen: list[int] = []

    async def work() -> None:
        nonlocal running
        running += 1
        seen.append(running)
        if len(seen) == bind_after:
            limit.bind()
            release.set()
        await release.wait()
        await asyncio.sleep(0.01)
        running -= 1

    scheduler = aiotasks.Scheduler(limit=limit)
    for _ in range(jobs):
        await scheduler.spawn(work())
    await asyncio.wait_for(scheduler.wait(), timeout=10)
    await scheduler.close()
    return seen


def test_kopfs_scheduler_starts_every_worker_while_unbound() -> None:
    seen = asyncio.run(_running_at_once(inflight.WorkerLimit(2), jobs=6, bind_after=6))
    assert max(seen) == 6  # all six at once: the start's listing cannot stall


def test_kopfs_scheduler_holds_the_bound_once_bound() -> None:
    seen = asyncio.run(_running_at_once(inflight.WorkerLimit(2), jobs=8, bind_after=4))
    assert seen[:4] == [1, 2, 3, 4]
    # The four already running finish; the next ones start only below the bound.
    assert all(n <= 2 for n in seen[4:]) and len(seen) == 8


def test_the_first_handler_call_binds_the_limit() -> None:
    settings = kopf.OperatorSettings()
    memo: dict[str, Any] = {}
    inflight.configure(settings, memo, 3)
    limit = settings.queueing.worker_limit
    assert isinstance(limit, inflight.WorkerLimit) and not limit.bound
    assert settings.queueing.idle_timeout == inflight.IDLE_TIMEOUT
    asyncio.run(inflight.bind_once_indexed(memo=dict(memo)))  # kopf passes a copy of the memo
    assert limit.bound and limit == 3
