"""The job pool: one job per key, a namespace's jobs one at a time, nobody else starved."""

import threading
from collections.abc import Callable

import pytest

from tenantdb.controllers import jobs

WAIT = 10.0


def blocker() -> tuple[threading.Event, threading.Event, Callable[[], str]]:
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        assert release.wait(WAIT)
        return "done"

    return started, release, work


def test_a_namespace_waits_in_its_queue_while_another_namespace_runs() -> None:
    pool = jobs.Jobs(workers=2, per_group=1)
    a_started, a_release, a_work = blocker()
    a2_started, a2_release, a2_work = blocker()
    b_started, b_release, b_work = blocker()
    first = pool.submit("a1", a_work, group="a")
    second = pool.submit("a2", a2_work, group="a")
    other = pool.submit("b1", b_work, group="b")
    assert a_started.wait(WAIT) and b_started.wait(WAIT)  # b got the second worker
    assert not a2_started.is_set() and not second.running()
    b_release.set()
    assert other.result(WAIT) == "done"
    assert not a2_started.wait(0.2)  # a free worker does not let a run two at once
    a_release.set()
    assert first.result(WAIT) == "done"
    assert a2_started.wait(WAIT)
    a2_release.set()
    assert second.result(WAIT) == "done"
    pool.close()


def test_one_job_per_key_and_errors_reach_the_future() -> None:
    pool = jobs.Jobs(workers=1)
    _, release, work = blocker()
    first = pool.submit("k", work)
    assert pool.submit("k", lambda: "other") is first
    release.set()
    assert first.result(WAIT) == "done"

    def broken() -> None:
        raise ValueError("boom")

    failed = pool.submit("k", broken)
    assert failed is not first
    with pytest.raises(ValueError, match="boom"):
        failed.result(WAIT)
    pool.forget("k")
    assert pool.get("k") is None
    pool.close()


def test_the_deadline_ends_a_job_between_two_chunks() -> None:
    seen: list[int] = []
    now = [100.0]
    check = jobs.deadline(30, seen.append, clock=lambda: now[0])
    check(1)
    now[0] += 31
    with pytest.raises(jobs.JobTimeout, match="TENANTDB_BACKUP_TIMEOUT"):
        check(2)
    assert seen == [1]
