"""Handlers wait for the operator's first start-up attempt, and only for that one."""

import asyncio
import threading
from typing import Any, cast

import kopf
import pytest

from tenantdb.controllers import runtime


def test_a_handler_waits_for_the_first_attempt_and_gets_its_runtime() -> None:
    memo: dict[str, Any] = {}
    slot = runtime.Slot.install(memo)
    started = cast(runtime.Runtime, object())
    got: list[runtime.Runtime] = []
    waiting = threading.Thread(target=lambda: got.append(runtime.of(memo)))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and not got  # still waiting: nothing published yet
    slot.publish(started)
    waiting.join(5)
    assert got == [started]


def test_after_a_failed_attempt_handlers_wait_no_longer() -> None:
    memo: dict[str, Any] = {}
    runtime.Slot.install(memo).publish(None)
    with pytest.raises(kopf.TemporaryError, match="not connected"):
        runtime.of(memo)
    assert runtime.current(memo) is None


def test_every_object_is_given_the_operator_memo_itself_not_a_copy() -> None:
    from kopf._core.reactor import inventory  # noqa: PLC0415 (kopf's own per-object memories)

    memo = runtime.SharedMemo(readiness="state")
    memories = inventory.ResourceMemories()

    async def recall(uid: str) -> Any:
        body = {"metadata": {"uid": uid, "name": uid, "namespace": "ns"}}
        return await memories.recall_memo(cast(Any, body), memobase=memo)

    first, second = asyncio.run(recall("a")), asyncio.run(recall("b"))
    assert first is memo and second is memo
    memo["later"] = 1  # a key set after the objects were seen reaches them too
    assert first["later"] == 1
