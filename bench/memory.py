"""Where the operator's memory goes: snapshots inside a real ``tenantdb run`` process.

The operator runs as in ``bench/scale.py`` (its own process, a local control
plane, a durable embedded PostgreSQL), with ``bench/memtrace`` on its
``PYTHONPATH``: on SIGUSR1 that hook writes RSS, glibc's heap, threads,
asyncio tasks, the most numerous object types and (``--trace``, which starts
``tracemalloc`` before the first import) Python's allocations by package
and by line. Snapshots: idle with no tenant, then after each burst of
``--tenants`` schema Tenants is Ready, then after ``--settle`` seconds more,
and last after glibc was asked to give back its free memory (``malloc_trim``).

    .venv/bin/python bench/memory.py --tenants 1000 --trace
    .venv/bin/python bench/memory.py --tenants 1000 1000 --env MALLOC_ARENA_MAX=2

Prints one summary per snapshot; ``--out`` keeps the raw reports and tracemalloc's snapshots.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import scale

from tenantdb.devenv import controlplane, operator_process, stack

HOOK = Path(__file__).resolve().parent / "memtrace"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[1000])
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after each burst")
    parser.add_argument(
        "--settles", type=int, default=1, help="snapshots after each burst, --settle apart"
    )
    parser.add_argument("--trace", action="store_true", help="tracemalloc from the start")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the operator")
    parser.add_argument("--out", type=Path, help="keep the reports (and snapshots) here")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with common.database() as db, tempfile.TemporaryDirectory(prefix="tenantdb-mem-") as work:
        reports = measure(db, Path(work), args.out or Path(work), args)
    for before, report in zip([None, *reports], reports, strict=False):
        print(summary(report, before))
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


def measure(db: common.Database, work: Path, keep: Path, args: argparse.Namespace) -> list[dict]:
    """Start the operator with the hook, make the bursts, take the snapshots."""
    keep.mkdir(parents=True, exist_ok=True)
    out = keep / "memtrace.jsonl"
    env = {"TENANTDB_CREDENTIALS_KEY": db.key_text, "TENANTDB_MEMTRACE_FILE": str(out),
           "PYTHONPATH": os.pathsep.join([str(HOOK), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    if args.trace:
        env["PYTHONTRACEMALLOC"] = "1"
    env |= dict(item.split("=", 1) for item in args.env)
    with controlplane.ControlPlane(work / "k8s") as plane:
        stack.install_crds(plane.kubeconfig)
        process = operator_process.OperatorProcess(
            plane.kubeconfig, db.operator_url, keep / "operator.log", extra_env=env
        )
        process.start()
        op = scale.Operator(process, plane.kubeconfig)
        try:
            time.sleep(args.settle)
            snapshot(op, out, "idle: no tenant")
            for count in args.tenants:
                run = scale.provision_through(db, op, "schema", count)
                peak = max(s.rss_mb for s in op.samples)
                snapshot(op, out, f"{op.ready_before}-ready: burst peak {peak:.0f} MB, "
                         f"{run.ready_after_last_s:.0f} s after the last create")  # fmt: skip
                for n in range(1, args.settles + 1):
                    time.sleep(args.settle)
                    snapshot(op, out, f"{op.ready_before}-settled: {n * args.settle:.0f} s later")
            snapshot(op, out, "trimmed: the same after malloc_trim(0)")
        finally:
            process.stop()
    return [json.loads(line) for line in out.read_text().splitlines()]


def snapshot(op: scale.Operator, out: Path, label: str) -> None:
    """Ask the hook for one report and wait until it is written."""
    Path(f"{out}.label").write_text(label)
    done = Path(f"{out}.done")
    before = done.read_text().count("\n") if done.exists() else 0
    assert op.process.pid is not None
    os.kill(op.process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while not (done.exists() and done.read_text().count("\n") > before):
        assert time.monotonic() < deadline, "no memory report from the operator"
        time.sleep(0.5)


def summary(r: dict, before: dict | None) -> str:
    """A few lines per report; CPU is the share of one core since the report before."""
    heap = r["heap"]
    cpu = "" if before is None else f"; CPU {cpu_share(before, r):.1%} of a core since"
    lines = [f"== {r['label']}: RSS {r['rss_mb']:.0f} MB{cpu}; heap in use {heap['in_use_mb']:.0f},"
             f" free in arenas {heap['free_mb']:.0f}, mmap {heap['mmap_mb']:.0f} MB;"
             f" {r['threads']} threads; {r['sockets']} sockets; tasks {r['tasks']}"]  # fmt: skip
    py = r["pymalloc"]
    lines.append(
        f"   Python's arenas {py['arenas_mb']:.0f} MB: live objects {py['allocated_mb']:.0f},"
        f" free in used pools {py['available_mb']:.0f}, empty pools {py['unused_pools_mb']:.0f}"
    )
    lines.append(f"   types {r['types']}")
    lines.append(f"   bodies alive {r.get('bodies')}")
    lines += [f"     {n:>4} held by {chain}" for chain, n in r.get("held_by", {}).items()]
    if "traced_mb" in r:
        lines.append(f"   traced {r['traced_mb']:.0f} MB by package:")
        lines += [f"     {k:40} {v:7.1f}" for k, v in r["packages_mb"].items()]
        lines += [
            f"     {where:70} {mb:7.1f} MB {count:>8}" for where, mb, count in r["lines"][:25]
        ]
    return "\n".join(lines)


def cpu_share(before: dict, after: dict) -> float:
    """The operator's CPU seconds per second between two reports (their own work left out)."""
    spent = after["cpu_s"] - before["end_cpu_s"]
    return spent / max(after["at"] - before["end_at"], 1e-9)


if __name__ == "__main__":
    raise SystemExit(main())
