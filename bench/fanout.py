"""Benchmark: one migration fanned out to N schema-mode tenants, engine against raw psycopg.

Three measurements, all in the same run, on one server (``--durable``: fsync,
synchronous_commit and full_page_writes on, as production runs; otherwise the
fast, crash-unsafe settings the tests use), everything as the non-superuser
operator role:

1. **Fan-out.** One migration (``ALTER TABLE ... ADD COLUMN`` + ``CREATE
   INDEX``) on N tenants with P workers (each of ``--parallel``), through the
   engine (``core.migrations.commands.upgrade``: the tenant's lock row and
   ledger read on an operator connection; on a session as the tenant's owner
   role from ``TenantSessions``, the timeouts and search_path, the marker
   row, the DDL and COMMIT in one message; the ledger row committing with the
   lock), against two raw baselines with the same P workers:

   a. **warm pool**: P operator connections, opened and filled before
      anything is timed, each tenant's DDL in one transaction after
      ``scoping.enter`` (``SET LOCAL ROLE`` owner, ``SET LOCAL
      search_path``) — what a tool on a privileged session would do;
   b. **login per tenant**: a fresh connection authenticated as the
      tenant's owner role (SCRAM, the derived password), ``SET LOCAL
      search_path``, the DDL, COMMIT, close — what a least-privilege tool
      must do, and the baseline the target is set against.

   Each run adds fresh columns, so all three do the same work; the order
   rotates from run to run.
2. **Nothing pending.** A second reconcile of the applied migration
   (``reconciling.reconcile``: targets, one progress query, verdict), as
   the controller runs it; and for scale, the naive alternative that visits
   every tenant (lock + ledger read each).
3. **Through the operator** (``--operator-tenants`` > 0): a control plane,
   the operator process, T Tenants, then one Migration from ``kubectl
   apply`` until ``status.phase`` is ``Succeeded``, against the engine alone
   on the same T tenants.

With ``--write`` the run replaces its server setting's part of the section
(durable or fast) and keeps the other's as it stands:

    nice -n 10 .venv/bin/python bench/fanout.py --durable --tenants 500 --parallel 2 4 --runs 8 --write
    nice -n 10 .venv/bin/python bench/fanout.py --tenants 500 --parallel 2 4 --runs 8 --write
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import psycopg
import readywatch
import yaml
from psycopg import conninfo, sql

from tenantdb.api import migrations as api
from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, passwords, scoping
from tenantdb.core.migrations import commands as migrations
from tenantdb.core.migrations import reconciling, rollout, scripts
from tenantdb.settings import DEFAULT_PLANS

HEADING = "## Migrations"
NAMESPACE = "bench"
BASE = scripts.Script(
    version=1, name="base", up="CREATE TABLE leads (id bigint PRIMARY KEY, email text NOT NULL)"
)


SIDES = ("engine", "warm", "login")
"""The engine, baseline (a) on a warm operator pool, baseline (b) logging in per tenant."""


SETTINGS = {
    True: "### Durable server (fsync and synchronous commit on)",
    False: "### Fast server (no fsync, as the tests run)",
}
"""The subsection of each server setting, by ``--durable``."""
KEPT = ("### Where the time goes",)
"""Subsections written by hand (a profile, figures from before a change): kept as they are."""
TARGET = 1.5
"""engine/(b) on the durable server, at every worker count measured."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument(
        "--parallel", type=int, nargs="+", default=[2, 4], help="worker counts (and pool sizes)"
    )
    parser.add_argument("--runs", type=int, default=8, help="runs per worker count")
    parser.add_argument(
        "--durable",
        action="store_true",
        help="start the embedded server with fsync, synchronous_commit and full_page_writes on",
    )
    parser.add_argument("--operator-tenants", type=int, default=0, help="0 skips part 3")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    with common.database(durable=args.durable) as db:
        args.durability = db.durability()
        server = common.open_server(db, "tenantdb-bench", max(args.parallel))
        try:
            targets = tenants(server, NAMESPACE, args.tenants)
            measured = {
                parallel: fanout(db, server, targets, parallel, args.runs, first=100 + 100 * i)
                for i, parallel in enumerate(args.parallel)
            }
            args.load_end = os.getloadavg()[0]
            noop_s, visit_s = nothing_pending(server, targets, args.runs, f"{args.parallel[0]}_0")
        finally:
            server.close()
        operator = None
        if args.operator_tenants:
            try:
                operator = through_operator(db, args)
            except Exception as exc:  # parts 1 and 2 are still worth writing
                print(f"through the operator: not measured: {exc}", flush=True)
    part = render(args, measured, noop_s, visit_s, operator)
    print(part)
    if args.write:
        other = common.read_section(SETTINGS[not args.durable])
        parts = {args.durable: part, not args.durable: other or ""}
        kept = [common.read_section(heading) or "" for heading in KEPT]
        section = "\n".join(
            p.rstrip("\n") + "\n" for p in [INTRO, parts[True], parts[False], *kept] if p
        )
        common.write_section(HEADING, section)
    return 0


def tenants(server: commands.Server, namespace: str, count: int) -> list[scoping.TenantLocation]:
    """N fresh schema tenants with the base table (not timed)."""
    prefix = f"f{uuid.uuid4().hex[:5]}"
    for index in range(count):
        request = commands.TenantRequest(
            uid=str(uuid.uuid4()), name=f"{prefix}-{index}", namespace=namespace,
            isolation=Isolation.SCHEMA, plan="standard", limits=DEFAULT_PLANS["standard"],
        )  # fmt: skip
        commands.provision(server, request, passwords.generate(), reset_password=True)
    targets = migrations.targets(server, namespace, api.Scope.TENANT)
    run_engine(server, BASE, targets, 4)
    print(f"{len(targets)} tenants ready", flush=True)
    return targets


def ddl(column: str) -> str:
    return f"ALTER TABLE leads ADD COLUMN {column} text;\nCREATE INDEX leads_{column} ON leads ({column})"


def run_engine(
    server: commands.Server,
    script: scripts.Script,
    targets: list[scoping.TenantLocation],
    parallel: int,
) -> None:
    report = migrations.upgrade(
        server, script, targets, applied_by="bench",
        policy=rollout.Policy(max_parallel=parallel, failure_budget=0),
    )  # fmt: skip
    done = report.count(*[o for o in migrations.Outcome if o.done])
    assert done == len(targets), f"{script.name}: {done}/{len(targets)}"


def run_warm(
    pool: connecting.Pool,
    shared_schema: str,
    statements: str,
    targets: list[scoping.TenantLocation],
    parallel: int,
) -> None:
    """Baseline (a): the same statements by hand over a warm pool of operator
    connections, one transaction per tenant, the tenant's scope entered first
    (``scoping.enter``: ``SET LOCAL ROLE`` owner, ``SET LOCAL search_path``)."""

    def one(target: scoping.TenantLocation) -> None:
        with pool.connection() as conn, conn.transaction():
            scoping.enter(conn, target, "owner", shared_schema)
            conn.execute(statements.encode())

    with ThreadPoolExecutor(parallel) as workers:
        list(workers.map(one, targets))


def run_login(
    db: common.Database,
    shared_schema: str,
    statements: str,
    targets: list[scoping.TenantLocation],
    parallel: int,
) -> None:
    """Baseline (b): per tenant a fresh connection as its owner role (SCRAM with the
    derived password), ``SET LOCAL search_path``, the statements, COMMIT, close."""

    def one(target: scoping.TenantLocation) -> None:
        role, database = scoping.session_login(target)
        url = conninfo.make_conninfo(
            db.operator_url,
            user=role,
            password=passwords.role_password(db.key, role),
            dbname=database,
        )
        path = sql.Identifier(target.search_path(shared_schema))
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path = {}").format(path))
            conn.execute(statements.encode())

    with ThreadPoolExecutor(parallel) as workers:
        list(workers.map(one, targets))


def fanout(
    db: common.Database,
    server: commands.Server,
    targets: list[scoping.TenantLocation],
    parallel: int,
    runs: int,
    first: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall seconds of each run by side, and this process's CPU seconds (the
    client's: every worker thread) by side. The order rotates each run; the
    engine's script versions start at ``first``."""
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    cpu: dict[str, list[float]] = {side: [] for side in SIDES}
    # Baseline (a) gets what the engine's operator side has: a pool of the same
    # size, opened and filled before anything is timed.
    warm_pool = connecting.open_pool(server.url, parallel, parallel, name="tenantdb-bench-raw")
    warm_pool.wait()
    shared = server.shared_schema
    try:
        for run in range(runs):
            tag = f"{parallel}_{run}"
            script = scripts.Script(version=first + run, name=f"add_e{tag}", up=ddl(f"e{tag}"))
            work: dict[str, Callable[[], None]] = {
                "engine": functools.partial(run_engine, server, script, targets, parallel),
                "warm": functools.partial(
                    run_warm, warm_pool, shared, ddl(f"w{tag}"), targets, parallel
                ),
                "login": functools.partial(
                    run_login, db, shared, ddl(f"l{tag}"), targets, parallel
                ),
            }
            order = SIDES[run % 3 :] + SIDES[: run % 3]
            if run // 3 % 2:
                order = tuple(reversed(order))
            for side in order:
                started, cpu_started = time.perf_counter(), time.process_time()
                work[side]()
                times[side].append(time.perf_counter() - started)
                cpu[side].append(time.process_time() - cpu_started)
            print(
                f"{parallel} workers, run {run + 1} ({' '.join(order)}): "
                + " ".join(f"{side} {times[side][-1]:.2f}s" for side in SIDES),
                flush=True,
            )
    finally:
        warm_pool.close()
    return times, cpu


def nothing_pending(
    server: commands.Server, targets: list[scoping.TenantLocation], runs: int, tag: str
) -> tuple[list[float], list[float]]:
    """A reconcile that finds everything applied, as the controller does it, and the naive
    visit; of version 100, the first fan-out's first run (``tag``: its columns)."""
    name, spec = f"add_e{tag}", api.MigrationSpec(version=100, up=ddl(f"e{tag}"))
    request = reconciling.Request(
        name=name, namespace=NAMESPACE, spec=spec,
        labels={t.uid: {} for t in targets},
    )  # fmt: skip
    noop_s: list[float] = []
    visit_s: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        verdict = reconciling.reconcile(server, request, "bench", lambda *_: None)
        noop_s.append(time.perf_counter() - started)
        assert verdict is not None and verdict.reason == "Applied", verdict
        started = time.perf_counter()
        run_engine(server, scripts.from_spec(name, spec), targets, 4)
        visit_s.append(time.perf_counter() - started)
    return noop_s, visit_s


def through_operator(db: common.Database, args: argparse.Namespace) -> dict[str, float]:
    """T tenants through the API server; one Migration until Succeeded vs the engine alone."""
    from tenantdb.devenv import controlplane, operator_process, stack  # noqa: PLC0415

    count = args.operator_tenants
    with (
        tempfile.TemporaryDirectory(prefix="tenantdb-bench-k8s-") as directory,
        controlplane.ControlPlane(Path(directory) / "k8s") as plane,
    ):
        kubeconfig = plane.kubeconfig
        stack.install_crds(kubeconfig)
        process = operator_process.OperatorProcess(
            kubeconfig,
            db.operator_url,
            Path(directory) / "operator.log",
            extra_env={"TENANTDB_CREDENTIALS_KEY": db.key_text},
        )
        process.start()
        try:
            namespace = f"fan-{uuid.uuid4().hex[:6]}"
            stack.kubectl(kubeconfig, "create", "namespace", namespace)
            docs = [
                {"apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant", "metadata": {"name": f"t{i:04d}"},
                 "spec": {"isolation": "schema"}}
                for i in range(count)
            ]  # fmt: skip
            stack.kubectl(
                kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs)
            )
            started = time.perf_counter()
            wait_ready(kubeconfig, namespace, count)
            print(
                f"{count} tenants Ready through the operator in {time.perf_counter() - started:.0f}s",
                flush=True,
            )
            base = {"apiVersion": "tenantdb.io/v1alpha1", "kind": "Migration", "metadata": {"name": "base"},
                    "spec": {"version": 1, "up": BASE.up, "strategy": {"maxParallel": args.parallel}}}  # fmt: skip
            stack.kubectl(
                kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump(base)
            )
            wait_succeeded(kubeconfig, namespace, "base")
            body = {"apiVersion": "tenantdb.io/v1alpha1", "kind": "Migration", "metadata": {"name": "fan"},
                    "spec": {"version": 2, "up": ddl("op"), "strategy": {"maxParallel": args.parallel}}}  # fmt: skip
            started = time.perf_counter()
            stack.kubectl(
                kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump(body)
            )
            wait_succeeded(kubeconfig, namespace, "fan")
            operator_s = time.perf_counter() - started
        finally:
            process.stop()
        server = common.open_server(db, "tenantdb-bench", args.parallel)
        try:
            targets = migrations.targets(server, namespace, api.Scope.TENANT)
            script = scripts.Script(version=3, name="engine_alone", up=ddl("en"))
            started = time.perf_counter()
            run_engine(server, script, targets, args.parallel)
            engine_s = time.perf_counter() - started
        finally:
            server.close()
    print(f"operator: {operator_s:.2f}s, engine alone: {engine_s:.2f}s", flush=True)
    return {"tenants": count, "operator": operator_s, "engine": engine_s}


def wait_ready(kubeconfig: Path, namespace: str, count: int, timeout: float = 3600) -> None:
    """Poll (1 s) until ``count`` Tenants are Ready."""
    from tenantdb.devenv import stack  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = stack.kubectl(kubeconfig, "-n", namespace, "get", "tenants", "-o", "json")
        ready = sum(readywatch.is_ready(t) for t in json.loads(raw)["items"])
        if ready >= count:
            return
        time.sleep(1)
    raise TimeoutError(f"{namespace}: tenants not Ready")


def wait_succeeded(kubeconfig: Path, namespace: str, name: str, timeout: float = 1800) -> None:
    """Poll status.phase (0.1 s) until Succeeded."""
    from tenantdb.devenv import stack  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = stack.kubectl(kubeconfig, "-n", namespace, "get", "migration", name, "-o", "json")
        phase = json.loads(raw).get("status", {}).get("phase")
        if phase == "Succeeded":
            return
        if phase in ("Failed", "Halted"):
            raise RuntimeError(f"migration {name} is {phase}")
        time.sleep(0.1)
    raise TimeoutError(name)


Measured = dict[int, tuple[dict[str, list[float]], dict[str, list[float]]]]
"""By worker count: wall seconds and client CPU seconds of each run, by side."""


def render(
    args: argparse.Namespace,
    measured: Measured,
    noop_s: list[float],
    visit_s: list[float],
    operator: dict[str, float] | None,
) -> str:
    """This server setting's subsection: a table per worker count, then the rest."""
    lines = [
        SETTINGS[args.durable],
        "",
        f"{args.tenants} schema tenants, {args.runs} runs per worker count; machine:"
        f" {common.machine()}; embedded PostgreSQL ({args.durability}); load average"
        f" {args.load:.1f} before the fan-out, {args.load_end:.1f} after it (other test"
        " suites ran on the machine meanwhile).",
    ]
    for parallel, (times, cpu) in measured.items():
        lines += ["", *_workers(args, parallel, times, cpu)]
    noop, visit = common.median(noop_s), common.median(visit_s)
    lines += [
        "",
        f"- Nothing pending (the controller's second reconcile: targets, one progress query,"
        f" verdict): median **{noop * 1000:.0f} ms** for {args.tenants} tenants"
        f" (target ≤ 1 s: {'met' if noop <= 1 else 'not met'}); visiting every tenant"
        f" instead (lock + ledger read each, 4 workers) takes {visit * 1000:.0f} ms.",
    ]
    if operator:
        lines.append(
            f"- Through the operator and the API server ({operator['tenants']:.0f} tenants, "
            f"`kubectl apply` until `status.phase` is `Succeeded`, polled every 0.1 s): "
            f"**{operator['operator']:.2f} s**, against {operator['engine']:.2f} s for the engine "
            f"alone on the same tenants (one run each; includes the daemon noticing the object)."
        )
    flags = "--durable " if args.durable else ""
    workers = " ".join(str(p) for p in measured)
    lines += [
        "",
        f"Reproduce: `nice -n 10 .venv/bin/python bench/fanout.py {flags}--tenants"
        f" {args.tenants} --parallel {workers} --runs {args.runs} --operator-tenants"
        f" {args.operator_tenants} --write`.",
    ]
    return "\n".join(lines) + "\n"


def _workers(
    args: argparse.Namespace,
    parallel: int,
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> list[str]:
    """One worker count: the runs, the medians, the ratios, throughput and client CPU."""
    med = {side: common.median(times[side]) for side in SIDES}
    cpu_ms = {side: common.median(cpu[side]) / args.tenants * 1000 for side in SIDES}
    engine, warm, login = (med[side] for side in SIDES)
    rows = [
        f"| {i + 1} | {e:.2f} | {lg:.2f} | {w:.2f} | {e / lg:.2f} | {e / w:.2f} | {lg / w:.2f} |"
        for i, (e, w, lg) in enumerate(zip(*(times[side] for side in SIDES), strict=True))
    ]
    ratios = [e / lg for e, lg in zip(times["engine"], times["login"], strict=True)]
    if args.durable:
        verdict = (
            "met" if engine / login <= TARGET else f"**not met** by {engine / login - TARGET:.2f}"
        )
        target = f" (target ≤ {TARGET}×: {verdict})"
    else:
        target = ""
    per_tenant = (engine - login) / args.tenants * 1000
    return [
        f"**{parallel} workers.**",
        "",
        "| run | engine (s) | (b) login per tenant (s) | (a) warm pool (s) | engine/(b) | engine/(a) | (b)/(a) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| **median** | **{engine:.2f}** | **{login:.2f}** | **{warm:.2f}** |"
        f" **{engine / login:.2f}** | **{engine / warm:.2f}** | **{login / warm:.2f}** |",
        "",
        f"- engine/(b), medians: **{engine / login:.2f}×**{target}; median of the per-run"
        f" ratios {common.median(ratios):.2f}, per run {min(ratios):.2f}–{max(ratios):.2f};"
        f" the engine adds {per_tenant:.2f} ms of wall time per tenant to (b).",
        f"- Throughput: {args.tenants / engine:.0f} tenants/s through the engine,"
        f" {args.tenants / login:.0f} for (b), {args.tenants / warm:.0f} for (a).",
        f"- Client CPU per tenant: {cpu_ms['engine']:.2f} ms engine, {cpu_ms['login']:.2f} ms"
        f" (b), {cpu_ms['warm']:.2f} ms (a); the client, the {parallel} backends and the"
        " server share the machine's 2 cores.",
    ]


INTRO = """## Migrations

`bench/fanout.py`: one migration (`ALTER TABLE leads ADD COLUMN` + `CREATE INDEX`) on
schema-mode tenants, everything as the non-superuser operator role, three ways in the
same run and with the same workers (the order rotates every run):

- **engine**: `core.migrations.commands.upgrade` — on an operator connection the
  tenant's lock row and the ledger read; on a session as the tenant's owner role
  (`TenantSessions`, which keeps at most 16 idle sessions, so with hundreds of
  tenants every tenant is a fresh login) the timeouts and search_path, the marker
  row, the DDL and COMMIT; then the ledger row, committed with the lock;
- **(b) login per tenant**: raw psycopg opening a connection as the tenant's owner role
  (SCRAM-SHA-256, the derived password, the 64-iteration verifier), `SET LOCAL
  search_path` + the DDL in one transaction, then closing it — what a least-privilege
  tool must do, and the baseline of the target: **engine ≤ 1.5× (b) on a durable
  server at 2 and 4 workers**;
- **(a) warm pool**: raw psycopg on a pool of operator connections opened and filled
  before timing, `SET LOCAL ROLE` owner + `SET LOCAL search_path` + the DDL in one
  transaction per tenant — what a tool on a privileged session does (no login; for
  scale only: the engine never runs tenant SQL on a privileged session).

Round trips per tenant. Engine: on the operator connection 3 (the pool's check of the
connection; one message with BEGIN, the lock row's claim and try-lock and the ledger
read; one with `SET LOCAL synchronous_commit = off`, the ledger row and COMMIT); on
the owner's session a login and 2 (one message with BEGIN, the timeouts, the
search_path, the marker row, the DDL and COMMIT; `DISCARD ALL` as the session goes
back to the cache, which then closes its least recently used session): 5 and a login,
two commits, one of which waits for its WAL flush. (b): a login and 4 (BEGIN, `SET
LOCAL search_path`, the DDL, COMMIT), one commit. (a): 5, one commit, no login.

The marker row is written first, with a plain INSERT, where some version is already
applied on the tenant (the ledger read says so): it fails only if this version has a
marker (a crash between the tenant's commit and the ledger's) or the marker table is
gone, and only then is the table read (2 more round trips, then the marker decides as
before). The ledger's commit does not wait for its WAL flush: the marker committed in
the tenant's transaction already records the outcome durably, WAL is lost only as a
suffix, and the next run turns a marker without a ledger row into the ledger row
(`running.LEDGER_AFTER_MARKER`).
"""


if __name__ == "__main__":
    raise SystemExit(main())
