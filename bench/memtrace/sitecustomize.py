"""Loaded into the operator process by ``bench/memory.py`` (on ``PYTHONPATH``): on SIGUSR1,
write where its memory is to ``TENANTDB_MEMTRACE_FILE`` (one JSON document a line),
and the tracemalloc snapshot beside it.

What is written: RSS and CPU time from /proc, glibc's heap (``mallinfo2``: in use, free in
the arenas, mmap'd), Python's traced allocations by package and by line
(when ``PYTHONTRACEMALLOC`` is set), threads, asyncio tasks by coroutine, and
the most numerous object types. Benchmark-only: the operator never imports it.
"""

import collections
import contextlib
import ctypes
import gc
import json
import os
import re
import signal
import threading
import time
import tracemalloc
from pathlib import Path

OUT = os.environ.get("TENANTDB_MEMTRACE_FILE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def _heap() -> dict:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mb = 2**20
    return {"arena_mb": info.arena / mb, "in_use_mb": info.uordblks / mb,
            "free_mb": info.fordblks / mb, "mmap_mb": info.hblkhd / mb}  # fmt: skip


def _rss() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def _cpu_s() -> float:
    """CPU seconds the process has used (user and system, all threads)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pymalloc() -> dict:
    """Python's own allocator (``sys._debugmallocstats``, which writes to fd 2): its
    arenas, and how much of them live objects fill (the rest is fragmentation)."""
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryFile("w+") as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        text = caught.read()

    def figure(name: str) -> float:
        found = re.search(rf"^# {name}\s+=\s+([\d,]+)", text, re.M)
        return float(found.group(1).replace(",", "")) if found else 0.0

    unused = re.search(r"(\d+) unused pools \* ([\d,]+) bytes", text)
    mb = 2**20
    return {"arenas_mb": figure("arenas allocated current"),  # 1 MiB each
            "allocated_mb": figure("bytes in allocated blocks") / mb,
            "available_mb": figure("bytes in available blocks") / mb,
            "unused_pools_mb": (int(unused.group(1)) * int(unused.group(2).replace(",", ""))
                                / mb if unused else 0.0)}  # fmt: skip


def _sockets() -> int:
    """Open sockets (TLS connections to the API server, PostgreSQL connections)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone
            count += os.readlink(fd).startswith("socket:")
    return count


def _package(filename: str) -> str:
    parts = filename.split("/site-packages/", 1)
    if len(parts) == 2:
        return parts[1].split("/", 1)[0].removesuffix(".py")
    if "/tenantdb/" in filename:
        return "tenantdb/" + filename.split("/tenantdb/", 1)[1].split("/", 1)[0]
    if "/lib/python" in filename:
        return "stdlib/" + filename.rsplit("/", 1)[1]
    return filename


def _tasks() -> dict:
    import asyncio  # noqa: PLC0415

    loop = asyncio._get_running_loop()  # the signal runs on kopf's (main) thread
    if loop is None:
        return {}
    names = collections.Counter(
        getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks(loop)
    )
    return dict(names.most_common(15)) | {"total": sum(names.values())}


def _describe(obj: object) -> str:
    """A referrer's type, with its keys or attribute names when it is a dict."""
    if isinstance(obj, dict):
        return "dict{" + ",".join(sorted(map(str, list(obj)[:6]))) + "}"
    return type(obj).__qualname__


def _holders(objects: list) -> dict:
    """Decoded API bodies still alive (dicts with ``apiVersion`` and ``metadata``), by
    kind, and for a sample of them what refers to them, four levels up: who keeps them."""
    bodies = [o for o in objects if isinstance(o, dict) and "apiVersion" in o and "metadata" in o]
    kinds = collections.Counter(str(b.get("kind")) for b in bodies)
    chains: collections.Counter[str] = collections.Counter()
    ignored = {id(objects), id(bodies)}
    for body in bodies[:: max(1, len(bodies) // 40)]:
        level, chain = [body], []
        for _ in range(4):
            refs = [r for r in gc.get_referrers(*level)
                    if id(r) not in ignored and not isinstance(r, type(_holders.__code__))
                    and type(r).__name__ != "frame"]  # fmt: skip
            if not refs:
                break
            chain.append("|".join(sorted({_describe(r) for r in refs[:3]})))
            ignored.update(id(r) for r in level)
            level = refs[:3]
        chains[" <- ".join(chain)] += 1
    return {"bodies": dict(kinds), "held_by": dict(chains.most_common(10))}


def _dump(label: str) -> None:
    at, cpu_s = time.time(), _cpu_s()  # before this report's own work
    gc.collect()
    if label.startswith("trimmed"):  # what glibc would give back if asked
        ctypes.CDLL(None).malloc_trim(0)
    report = {"label": label, "at": at, "rss_mb": _rss(), "cpu_s": cpu_s, "heap": _heap(),
              "pymalloc": _pymalloc(),
              "threads": threading.active_count(), "tasks": _tasks(),
              "sockets": _sockets()}  # fmt: skip
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    report["types"] = dict(types.most_common(20))
    report |= _holders(gc.get_objects())
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        snap.dump(f"{OUT}.{label.split(':', 1)[0]}.snapshot")  # for Snapshot.compare_to
        by_line = snap.statistics("lineno")
        packages: collections.Counter[str] = collections.Counter()
        for stat in snap.statistics("filename"):
            packages[_package(stat.traceback[0].filename)] += stat.size
        report["traced_mb"] = sum(s.size for s in by_line) / 2**20
        report["packages_mb"] = {k: v / 2**20 for k, v in packages.most_common(25)}
        report["lines"] = [[str(s.traceback[0]), s.size / 2**20, s.count] for s in by_line[:40]]
    report |= {"end_at": time.time(), "end_cpu_s": _cpu_s()}  # the next report's start
    with open(OUT, "a") as out:
        out.write(json.dumps(report) + "\n")


def _on_signal(signum, frame) -> None:
    asked = Path(f"{OUT}.label")
    label = asked.read_text().strip() if asked.exists() else "?"
    _dump(label)
    with Path(f"{OUT}.done").open("a") as done:
        done.write(label + "\n")


if OUT:
    signal.signal(signal.SIGUSR1, _on_signal)
