"""Trimming gives freed heap back to the system, in this very process."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path

import pytest

from tenantdb.controllers import heap

GLIBC = platform.libc_ver()[0] == "glibc"


def _rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trim_returns_pages_freed_in_the_middle_of_the_heap() -> None:
    # Blocks below the mmap threshold, every tenth kept: freed pages between them
    # stay in the arena, where only malloc_trim gives them back.
    blocks = [bytearray(4000) for _ in range(20_000)]
    kept = blocks[::10]
    del blocks
    before = _rss_kib()
    assert heap.trim()
    assert _rss_kib() < before - 20_000  # of about 70 MB freed
    assert len(kept) == 2000


def test_the_task_runs_until_stopped() -> None:
    async def lifecycle() -> None:
        memo: dict[str, object] = {}
        await heap.start(memo=memo)
        task = memo[heap.TASK]
        assert isinstance(task, asyncio.Task) and not task.done()
        await heap.stop(memo=memo)
        assert task.cancelled()

    asyncio.run(lifecycle())
