"""Benchmark: N Tenants created through the API server until all are Ready, the operator's cost.

One durable PostgreSQL server, one local control plane, the operator as its
own process (``tenantdb run``, as deployed). For each N (``schema`` mode,
then a few hundred ``database`` tenants, each in a namespace of its own):

* N Tenants created through the API server by a fast client (the Python
  client from 16 threads, one POST each), then the time until every one is
  Ready, followed with a watch (``readywatch``) and sampled every second;
* API requests per tenant by verb and resource, counted by the API server
  itself (``apiserver_request_total``), the benchmark's own POSTs, LIST and
  WATCHes taken out;
* the operator's RSS and CPU (``/proc``), sampled every second;
* the PostgreSQL catalog's size (``pg_catalog``'s relations, whole database).

Then, with every tenant Ready, an idle window: the operator's CPU and API
writes while only its periodic work runs (the verification loop's share of
each ``verify_interval``). Then one Migration fanned out through the operator
to the largest namespace, against the engine alone on the same tenants. The
operator stopped, the baselines of the same run: the same provisioning by the
engine alone (``tenantdb.core``, one tenant after the other) and by raw DDL
(``bench/provision.py``'s two sides). ``--write`` replaces the "Scale"
section of docs/benchmarks.md and its plot (docs/benchmarks-scale.png).

    .venv/bin/python bench/scale.py --tenants 1000 10000 --database-tenants 200 --write
    .venv/bin/python bench/scale.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import fanout
import provision
import readywatch
import yaml

from tenantdb.api import migrations as migration_api
from tenantdb.api.tenants import Isolation
from tenantdb.controllers import kube
from tenantdb.core.migrations import commands as migrations
from tenantdb.core.migrations import scripts
from tenantdb.devenv import apimetrics, controlplane, operator_process, stack

HEADING = "## Scale"
PLOT = common.DOCS.parent / "benchmarks-scale.png"
GROUP, VERSION = "tenantdb.io", "v1alpha1"
CLIENTS = 16
"""Threads creating Tenants."""
CATALOG = (
    "SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pg_catalog'),"
    " pg_database_size(current_database()), (SELECT count(*) FROM pg_roles)"
)


@dataclass
class Sample:
    """The operator at one moment."""

    at: float
    ready: int
    """Tenants Ready in all namespaces so far."""
    rss_mb: float
    cpu_s: float


@dataclass
class Run:
    """N tenants of one mode through the operator."""

    mode: str
    count: int
    namespace: str
    create_s: float = 0.0
    ready_after_last_s: float = 0.0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    rss_peak_mb: float = 0.0
    requests: dict[str, float] = field(default_factory=dict)
    writes_per_tenant: float = 0.0
    catalog_mb: float = 0.0
    database_mb: float = 0.0
    roles: int = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--database-tenants", type=int, default=200)
    parser.add_argument("--idle", type=float, default=120.0, help="seconds of the idle window")
    parser.add_argument("--parallel", type=int, default=4, help="the Migration's maxParallel")
    parser.add_argument("--quick", action="store_true", help="100 + 10 tenants, a short idle")
    parser.add_argument(
        "--baselines",
        type=int,
        nargs="*",
        help="the counts to repeat by the engine alone and raw DDL (default: every --tenants)",
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.tenants, args.database_tenants, args.idle = [100], 10, 20.0
    args.load = os.getloadavg()[0]
    with common.database() as db, tempfile.TemporaryDirectory(prefix="tenantdb-scale-") as work:
        args.durability = db.durability()
        runs, samples, idle, fan = through_operator(db, Path(work), args)
        counts = args.tenants if args.baselines is None else args.baselines
        baselines = {n: engine_and_raw(db, n) for n in counts}
    args.load_end = os.getloadavg()[0]
    section = render(args, runs, idle, fan, baselines)
    print(section)
    if args.write:
        plot(runs, samples, PLOT)
        common.write_section(HEADING, section)
    return 0


class Operator:
    """The operator process, the API server, and what the benchmark asks of them."""

    def __init__(self, process: operator_process.OperatorProcess, kubeconfig: Path) -> None:
        self.process, self.kubeconfig = process, kubeconfig
        self.samples: list[Sample] = []
        self.ready_before = 0
        os.environ["KUBECONFIG"] = str(kubeconfig)
        kube.login()  # the operator's own client, as a fast client of the benchmark

    def usage(self) -> tuple[float, float]:
        """RSS in MB and CPU seconds (user + system) of the operator process."""
        pid = self.process.pid
        assert pid is not None, "the operator is not running"
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks

    def sample(self, ready: int) -> None:
        rss, cpu = self.usage()
        self.samples.append(Sample(time.monotonic(), self.ready_before + ready, rss, cpu))


def through_operator(
    db: common.Database, work: Path, args: argparse.Namespace
) -> tuple[list[Run], list[Sample], dict[str, float], dict[str, float]]:
    with controlplane.ControlPlane(work / "k8s") as plane:
        stack.install_crds(plane.kubeconfig)
        process = operator_process.OperatorProcess(
            plane.kubeconfig, db.operator_url, work / "operator.log",
            extra_env={"TENANTDB_CREDENTIALS_KEY": db.key_text},
        )  # fmt: skip
        process.start()
        op = Operator(process, plane.kubeconfig)
        try:
            op.sample(0)
            runs = [provision_through(db, op, "schema", n) for n in args.tenants]
            runs.append(provision_through(db, op, "database", args.database_tenants))
            idle = idle_window(op, args.idle)
            largest = max((r for r in runs if r.mode == "schema"), key=lambda r: r.count)
            fan = fan_out(db, op, largest, args.parallel)
        finally:
            process.stop()
    return runs, op.samples, idle, fan


def provision_through(db: common.Database, op: Operator, mode: str, count: int) -> Run:
    """``count`` Tenants created at once, until every one is Ready."""
    run = Run(mode, count, f"scale-{mode}-{uuid.uuid4().hex[:6]}")
    stack.kubectl(op.kubeconfig, "create", "namespace", run.namespace)
    before = apimetrics.read(op.kubeconfig)
    _, cpu_before = op.usage()
    watch = readywatch.ReadyWatch(GROUP, VERSION, run.namespace)
    first_sample = len(op.samples)
    started = time.monotonic()

    def create(index: int) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant",
                "metadata": {"name": f"t{index:05d}"}, "spec": {"isolation": mode}}  # fmt: skip
        kube.create_custom_object(GROUP, VERSION, run.namespace, "tenants", body)

    with ThreadPoolExecutor(CLIENTS) as clients:
        list(clients.map(create, range(count)))
    last_create = time.monotonic()
    run.create_s = last_create - started
    ready = 0
    while ready < count:
        time.sleep(1.0)
        ready = watch.ready()
        op.sample(ready)
        assert time.monotonic() - last_create < 3600, f"{run.namespace}: {ready}/{count} Ready"
    run.ready_after_last_s = time.monotonic() - last_create
    watch.stop()
    op.ready_before += count
    settle(op, before, count)
    after = apimetrics.read(op.kubeconfig)
    run.rss_mb, cpu_after = op.usage()
    run.rss_peak_mb = max([s.rss_mb for s in op.samples[first_sample:]] + [run.rss_mb])
    run.cpu_s = cpu_after - cpu_before
    served = apimetrics.since(before, after)
    served[apimetrics.Request("POST", "tenants", "")] -= count  # the benchmark's own
    served[apimetrics.Request("LIST", "tenants", "")] -= watch.lists
    served[apimetrics.Request("WATCH", "tenants", "")] -= watch.watches
    ours = {
        k: v
        for k, v in served.items()
        if v > 0 and k.resource in ("tenants", "secrets", "events", "migrations")
    }
    run.requests = {str(k): v / count for k, v in sorted(ours.items())}
    run.writes_per_tenant = sum(apimetrics.writes(ours).values()) / count  # type: ignore[arg-type]
    run.catalog_mb, run.database_mb, run.roles = catalog(db)
    print(
        f"{mode} {count}: created in {run.create_s:.1f}s, all Ready {run.ready_after_last_s:.1f}s"
        f" after the last; {run.writes_per_tenant:.2f} writes/tenant; RSS {run.rss_mb:.0f} MB",
        flush=True,
    )
    return run


def settle(op: Operator, before: Counter[apimetrics.Request], count: int) -> None:
    """Wait (up to 30 s) for kopf's event poster: its events follow Ready."""
    events = apimetrics.Request("POST", "events", "")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if apimetrics.since(before, apimetrics.read(op.kubeconfig))[events] >= count:
            return
        time.sleep(0.5)


def idle_window(op: Operator, seconds: float) -> dict[str, float]:
    """The operator's CPU share and API writes with every tenant Ready and nothing to do."""
    before = apimetrics.read(op.kubeconfig)
    _, cpu0 = op.usage()
    time.sleep(seconds)
    rss1, cpu1 = op.usage()
    writes = apimetrics.writes(apimetrics.since(before, apimetrics.read(op.kubeconfig)))
    return {
        "seconds": seconds,
        "cpu_share": (cpu1 - cpu0) / seconds,
        "writes": float(sum(writes.values())),
        "rss_mb": rss1,
        "tenants": float(op.ready_before),
    }


def fan_out(db: common.Database, op: Operator, run: Run, parallel: int) -> dict[str, float]:
    """One Migration through the operator until Succeeded, then the engine alone, same tenants."""
    strategy = {"maxParallel": parallel}
    for name, version, up in (("base", 1, fanout.BASE.up), ("fan", 2, fanout.ddl("op"))):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Migration", "metadata": {"name": name},
                "spec": {"version": version, "up": up, "strategy": strategy}}  # fmt: skip
        started = time.monotonic()
        stack.kubectl(
            op.kubeconfig, "-n", run.namespace, "apply", "-f", "-", stdin=yaml.safe_dump(body)
        )
        fanout.wait_succeeded(op.kubeconfig, run.namespace, name, timeout=7200)
        operator_s = time.monotonic() - started
    server = common.open_server(db, "tenantdb-bench", parallel)
    try:
        targets = migrations.targets(server, run.namespace, migration_api.Scope.TENANT)
        script = scripts.Script(version=3, name="engine_alone", up=fanout.ddl("en"))
        started = time.monotonic()
        fanout.run_engine(server, script, targets, parallel)
        engine_s = time.monotonic() - started
    finally:
        server.close()
    print(f"fan-out to {run.count}: operator {operator_s:.2f}s, engine {engine_s:.2f}s", flush=True)
    return {"tenants": float(run.count), "operator": operator_s, "engine": engine_s}


def engine_and_raw(db: common.Database, count: int) -> dict[str, float]:
    """The same N schema tenants by the engine alone and by raw DDL (one run each)."""
    server = common.open_server(db, "tenantdb-bench", 2)
    times: dict[str, float] = {}
    try:
        for side, make in (("engine", provision.provision_core), ("raw", provision.provision_raw)):
            prefix = f"b{uuid.uuid4().hex[:6]}"
            started = time.monotonic()
            make(server, Isolation.SCHEMA, prefix, count)
            times[side] = time.monotonic() - started
            provision.clean(db, prefix)
    finally:
        server.close()
    print(f"baselines {count}: engine {times['engine']:.1f}s, raw {times['raw']:.1f}s", flush=True)
    return times


def catalog(db: common.Database) -> tuple[float, float, int]:
    """``pg_catalog``'s relations and the whole database, in MB, and the number of roles."""
    with psycopg.connect(db.superuser_url) as conn:
        row: Any = conn.execute(CATALOG).fetchone()
    return int(row[0]) / 2**20, int(row[1]) / 2**20, int(row[2])


def plot(runs: list[Run], samples: list[Sample], path: Path) -> None:
    """Time-to-Ready and RSS against tenant count."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    schema = sorted((r for r in runs if r.mode == "schema"), key=lambda r: r.count)
    left.plot(
        [r.count for r in schema],
        [r.ready_after_last_s for r in schema],
        "o-",
        label="after the last create",
    )
    left.plot(
        [r.count for r in schema],
        [r.create_s + r.ready_after_last_s for r in schema],
        "s--",
        label="after the first create",
    )
    left.set(
        xlabel="schema tenants created at once",
        ylabel="seconds until all Ready",
        title="Time to Ready",
    )
    left.legend()
    right.plot([s.ready for s in samples], [s.rss_mb for s in samples], ".-")
    right.axhline(200, color="grey", linestyle=":", label="target 200 MB")
    right.set(
        xlabel="tenants Ready (all namespaces)", ylabel="operator RSS (MB)", title="Operator memory"
    )
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def render(
    args: argparse.Namespace,
    runs: list[Run],
    idle: dict[str, float],
    fan: dict[str, float],
    baselines: dict[int, dict[str, float]],
) -> str:
    lines = [
        HEADING,
        "",
        "`bench/scale.py`: Tenants created at once through the API server (the operator's own client, "
        f"{CLIENTS} threads) until every one is Ready, with the operator as its own process",
        "on a local control plane; API requests counted by the API server itself",
        "(`apiserver_request_total`, the benchmark's own creates and its watch of Ready taken out).",
        f"Machine: {common.machine()}; embedded PostgreSQL, durable ({args.durability});",
        f"load average {args.load:.1f} at the start, {args.load_end:.1f} at the end.",
        "Targets: 1,000 Ready within 30 s of the last create; ≤ 3 API writes per first",
        "reconcile; operator RSS ≤ 200 MB at 10,000 tenants.",
        "",
        "| mode | tenants | create (s) | all Ready after the last create (s) | tenants/s | operator CPU (s) | RSS peak / after (MB) | API writes/tenant | pg_catalog (MB) | database (MB) | roles |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        total = r.create_s + r.ready_after_last_s
        lines.append(
            f"| {r.mode} | {r.count} | {r.create_s:.1f} | {r.ready_after_last_s:.1f} | {r.count / total:.0f}"
            f" | {r.cpu_s:.0f} | {r.rss_peak_mb:.0f} / {r.rss_mb:.0f} | {r.writes_per_tenant:.2f} | {r.catalog_mb:.0f}"
            f" | {r.database_mb:.0f} | {r.roles} |"
        )
    lines += [
        "",
        "API requests per tenant, by verb and resource (tenants, secrets, events, migrations):",
        "",
    ]
    kinds = sorted({k for r in runs for k in r.requests})
    lines += ["| request | " + " | ".join(f"{r.mode} {r.count}" for r in runs) + " |",
              "|---|" + "---:|" * len(runs)]  # fmt: skip
    for kind in kinds:
        lines.append(
            f"| `{kind}` | " + " | ".join(f"{r.requests.get(kind, 0):.2f}" for r in runs) + " |"
        )
    lines += [
        "",
        "Per tenant the writes are kopf's finalizer (`PATCH tenants`, in a cycle of its own",
        "before any handler runs), then the reconcile's three: one `PATCH tenants/status`",
        "(status, conditions and kopf's diff base together), the Secret and the `Provisioned`",
        "event. A Tenant never provisioned creates its Secret without looking for one first",
        "(a create-only write; only a conflict makes it read). The later",
        "`PATCH tenants/status` of the verification loop (`IsolationVerified`, once per tenant)",
        "comes within one `verify_interval`, in the idle window below; the loop runs meanwhile",
        "too, so its reads (`GET tenants`) and writes for the tenants of earlier runs show in",
        "later columns. In the plot, RSS climbs while a burst is in flight (kopf's connections",
        "to the API server, bodies and handler state of every object at once), then comes back",
        "down within the operator's heap trimming interval (30 s) once the burst has passed: it",
        "follows how much work is in flight more than how many tenants exist (see Memory below).",
        "",
        f"- Idle ({idle['seconds']:.0f} s, {idle['tenants']:.0f} tenants Ready, default"
        f" `verify_interval` 300 s): operator CPU **{idle['cpu_share']:.1%}** of one core,"
        f" {idle['writes']:.0f} API writes (first `IsolationVerified` conditions), RSS"
        f" {idle['rss_mb']:.0f} MB.",
        f"- Migration fan-out to {fan['tenants']:.0f} schema tenants (maxParallel {args.parallel}):"
        f" **{fan['operator']:.2f} s** through the operator (`kubectl apply` until `Succeeded`),"
        f" against {fan['engine']:.2f} s for the engine alone on the same tenants.",
    ]
    for count, times in baselines.items():
        through = next(r for r in runs if r.mode == "schema" and r.count == count)
        lines.append(
            f"- Baselines at {count} schema tenants, one after the other on the operator's role:"
            f" engine alone {times['engine']:.1f} s, raw DDL {times['raw']:.1f} s; through the"
            f" operator {through.create_s + through.ready_after_last_s:.1f} s from the first create."
        )
    counts = " ".join(str(n) for n in args.tenants)
    chosen = "" if args.baselines is None else " --baselines " + " ".join(map(str, args.baselines))
    lines += ["", f"![time to Ready and RSS]({PLOT.name})", "",
              f"Reproduce: `.venv/bin/python bench/scale.py --tenants {counts} "
              f"--database-tenants {args.database_tenants}{chosen} --write`."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
