"""The requeue's schedule: back-off, the sooner wake-up wins, a forgotten one never fires."""

from __future__ import annotations

import queue
import time

from tenantdb.controllers import kube, requeue


def ref(uid: str) -> requeue.Ref:
    return requeue.Ref("ns", "tenants", f"t-{uid}", uid)


def recorder() -> tuple[requeue.Requeue, queue.Queue[tuple[str, float]]]:
    woken: queue.Queue[tuple[str, float]] = queue.Queue()
    waits = requeue.Requeue(10.0, wake=lambda r: woken.put((r.uid, time.monotonic())))
    return waits, woken


def test_repeated_waits_back_off_up_to_the_limit() -> None:
    waits = requeue.Requeue(10.0, wake=lambda r: None)
    delays = [waits.later(ref("a"), 2.0) for _ in range(8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    waits.forget("a")
    assert waits.later(ref("a"), 2.0) == 2.0  # got through once: starts over
    assert waits.waiting() == 1


def test_a_wake_up_comes_when_due_and_only_once() -> None:
    waits, woken = recorder()
    started = time.monotonic()
    waits.later(ref("a"), 0.2)
    uid, at = woken.get(timeout=5)
    assert uid == "a" and at - started >= 0.2
    assert waits.waiting() == 0
    assert woken.empty()


def test_the_sooner_wake_up_wins_and_a_forgotten_one_never_fires() -> None:
    waits, woken = recorder()
    waits.later(ref("slow"), 0.6)
    waits.later(ref("gone"), 0.1)
    waits.forget("gone")
    waits.later(ref("fast"), 0.1)
    waits.later(ref("fast"), 30.0)  # later than the one pending: the pending one stays
    assert [woken.get(timeout=5)[0] for _ in range(2)] == ["fast", "slow"]
    assert woken.empty() and waits.waiting() == 0


def test_an_object_gone_meanwhile_is_dropped() -> None:
    tries: list[str] = []

    def gone(r: requeue.Ref) -> None:
        tries.append(r.uid)
        raise kube.ApiError(404, "NotFound", "tenants.tenantdb.io t-a not found")

    waits = requeue.Requeue(0.05, wake=gone)
    waits.later(ref("a"), 0.05)
    deadline = time.monotonic() + 5
    while not tries and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tries == ["a"] and waits.waiting() == 0


def test_an_unforeseen_failure_does_not_end_the_wake_ups() -> None:
    woken: queue.Queue[str] = queue.Queue()

    def flaky(r: requeue.Ref) -> None:
        if r.uid == "bad":
            raise KeyError("metadata")
        woken.put(r.uid)

    waits = requeue.Requeue(30.0, wake=flaky)
    waits.later(ref("bad"), 0.05)
    waits.later(ref("good"), 0.2)
    assert woken.get(timeout=5) == "good"
    assert waits.waiting() == 1  # the bad one, due again later
