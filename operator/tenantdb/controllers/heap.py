"""The operator process's C heap: freed memory given back to the system after a burst.

A burst of thousands of Tenants costs memory only while it lasts: hundreds
of TLS connections to the API server at once (kopf opens one for each
request in flight, each with asyncio's 256 KiB read buffer and OpenSSL's
own), bodies and handler state in flight. Once the burst has passed, Python
frees all of it, but glibc keeps the freed pages in its arenas, so without
help RSS stays at the burst's peak for the life of the process. One task
asks glibc every ``TRIM_INTERVAL`` seconds, on a worker thread (the call
releases the GIL), to return its free pages (``malloc_trim``: tens of
milliseconds when there is much to give back, a few when there is not).
Without glibc (musl, macOS) it does nothing. Must not touch: anything but
the process's own heap.
"""

import asyncio
import ctypes
from typing import Any

import kopf

from tenantdb.controllers import runtime

TRIM_INTERVAL = 30.0
"""Seconds between two requests to glibc to give its free pages back."""
TASK = "heap-trimming"
"""The task, in kopf's memo."""


def _glibc() -> ctypes.CDLL | None:
    """The C library the process runs on, if it has glibc's ``malloc_trim``."""
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "malloc_trim") else None


def trim() -> bool:
    """Ask glibc to return its free pages to the system; whether it released any."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


@kopf.on.startup()
async def start(memo: Any, **_: Any) -> None:
    """Start trimming on kopf's event loop, for the life of the operator."""
    memo[TASK] = asyncio.create_task(_loop(TRIM_INTERVAL), name="tenantdb-heap-trimming")


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    """Stop trimming."""
    await runtime.stop_task(memo, TASK)


async def _loop(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
