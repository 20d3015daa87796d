"""Benchmark: rows/s of the demo-history seeder against a raw COPY of the same rows.

Each run provisions two fresh ``schema`` tenants with the sample tables and
the sample seeders' data, then

* **seeder**: ``seed_tenant(only=["demo_history"])`` with N users x D days,
  timed end to end (seeder discovery, connection, generation, COPY,
  history row, commit);
* **raw COPY**: the very same rows, generated before the clock starts, sent
  with two plain COPY statements (users, then messages) in one transaction
  as the tenant's login role, timed from the first COPY to the commit.

Both write on a session as the tenant's owner role (``TenantSessions``)
narrowed to its login role, as the operator's seeding does; the operator
itself runs as its non-superuser role. The two alternate which goes first.
The report gives every run, the medians and their ratio, and (with
``--write``) replaces the "Seeding" section of ``docs/benchmarks.md``.
PostgreSQL is the embedded server of ``tenantdb.devenv``, started durable
(fsync, synchronous_commit, full_page_writes on), unless ``DATABASE_URL``
names another.

    .venv/bin/python bench/seed.py --users 200 --days 180 --runs 5 --write
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402

from tenantdb.api.tenants import Isolation  # noqa: E402
from tenantdb.core import commands, scoping, seeding  # noqa: E402
from tenantdb.core.seeding import context, discovering  # noqa: E402
from tests.integration import test_seeding_support as support  # noqa: E402

SEEDERS = REPO / "seeders"
SECTION = "## Seeding"
SEED = 2026
USER_COLUMNS = ("id", "email", "full_name", "time_zone", "created_at")


@dataclass(frozen=True)
class Sample:
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    with common.database() as db:
        args.durability = db.durability()
        server = common.open_server(db, "tenantdb-bench", 4)
        seeder_runs: list[Sample] = []
        raw_runs: list[Sample] = []
        for run in range(args.runs):
            order = [bench_seeder, bench_raw] if run % 2 == 0 else [bench_raw, bench_seeder]
            for bench in order:
                sample = bench(db, server, args.users, args.days)
                (seeder_runs if bench is bench_seeder else raw_runs).append(sample)
                print(
                    f"run {run + 1} {bench.__name__[6:]:7} {sample.rows} rows in {sample.seconds:.2f}s = {sample.rate:,.0f} rows/s",
                    flush=True,
                )
        server.close()
    report = render(args, seeder_runs, raw_runs)
    print(report)
    if args.write:
        common.write_section(SECTION, report)
    return 0


@contextlib.contextmanager
def sample_tenant(db: common.Database, server: commands.Server) -> Iterator[scoping.TenantLocation]:
    """A schema tenant migrated by ``migrations/``, with the seeders demo_history depends on."""
    location = support.provision(server, f"bench-{uuid.uuid4().hex[:8]}", Isolation.SCHEMA)
    try:
        support.migrate(server, location)
        seed(server, location, ["sample_crm"], {})
        with psycopg.connect(db.superuser_url, autocommit=True) as admin:
            admin.execute("CHECKPOINT")
        with support.tenant_connection(server, location) as conn:
            conn.execute(
                sql.SQL("VACUUM ANALYZE {}.users").format(
                    sql.Identifier(location.schema_name or "")
                )
            )
        yield location
    finally:
        commands.deprovision(server, location.uid, location.name, drop=True)


def seed(
    server: commands.Server,
    location: scoping.TenantLocation,
    only: list[str],
    options: dict[str, str],
) -> seeding.SeedReport:
    return seeding.seed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        location.uid,
        "development",
        only,
        "development",
        SEEDERS,
        options=options,
    )


def bench_seeder(db: common.Database, server: commands.Server, users: int, days: int) -> Sample:
    with sample_tenant(db, server) as location:
        options = {
            "demo_history.users": str(users),
            "demo_history.days": str(days),
            "demo_history.seed": str(SEED),
        }
        started = time.perf_counter()
        report = seed(server, location, ["demo_history"], options)
        seconds = time.perf_counter() - started
        (result,) = [r for r in report.results if r.name == "demo_history"]
        return Sample(result.rows, seconds)


def bench_raw(db: common.Database, server: commands.Server, users: int, days: int) -> Sample:
    demo = demo_module()
    with (
        sample_tenant(db, server) as location,
        support.tenant_connection(server, location) as conn,
    ):
        leads = [
            (int(i), c)
            for i, c in conn.execute(
                sql.SQL("SELECT id, campaign_id FROM {}.leads ORDER BY email").format(
                    sql.Identifier(location.schema_name or "")
                )
            )
        ]
        first_id = 1_000_000
        user_rows = [
            (first_id + n, r["email"], r["full_name"], r["time_zone"], r["created_at"])
            for n, r in enumerate(demo.demo_users(users, SEED))
        ]
        messages = list(demo.generate([u[0] for u in user_rows], leads, days, SEED))
        started = time.perf_counter()
        with conn.transaction():
            scoping.enter(conn, location, "login", server.shared_schema)
            context.copy_rows(conn, sql.Identifier("users"), USER_COLUMNS, user_rows)
            context.copy_rows(conn, sql.Identifier("inbox_messages"), demo.COLUMNS, messages)
        seconds = time.perf_counter() - started
        return Sample(len(user_rows) + len(messages), seconds)


def demo_module() -> Any:
    """The demo_history seeder module, loaded the way the runner loads it."""
    (seeder,) = [s for s in discovering.discover(SEEDERS) if s.name == "demo_history"]
    return sys.modules[seeder.seed.__module__]


def render(args: argparse.Namespace, seeder_runs: list[Sample], raw_runs: list[Sample]) -> str:
    seeder_median = statistics.median(s.rate for s in seeder_runs)
    raw_median = statistics.median(s.rate for s in raw_runs)
    ratio = seeder_median / raw_median
    paired = [s.rate / r.rate for s, r in zip(seeder_runs, raw_runs, strict=True)]
    verdict = "meets" if ratio >= 0.5 else "misses"
    lines = [
        SECTION,
        "",
        "`bench/seed.py` times the `demo_history` seeder (through `seed_tenant`: discovery,",
        "connection, generation, COPY, history row, commit) against a raw COPY of the very same",
        "rows generated beforehand (two COPY statements in one transaction as the tenant's login",
        "role, on a session as its owner role like the seeder's), on fresh `schema` tenants",
        "migrated by `migrations/` (same tables, indexes and foreign keys), alternating which",
        "goes first. Wall-clock rows/s, so only the ratio travels between machines.",
        "Both pay for five indexes and three foreign-key checks per message (user, lead,",
        "campaign), which is most of the time: PostgreSQL, not the generator, sets the pace.",
        "",
        f"- demo history: {args.users} users x {args.days} days, seed {SEED}:"
        f" {seeder_runs[0].rows:,} rows per run, {args.runs} runs each",
        f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, embedded PostgreSQL, durable ({args.durability});"
        f" load average {args.load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "",
        "| run | seeder rows/s | raw COPY rows/s | seeder / raw |",
        "|---:|---:|---:|---:|",
        *(
            f"| {i + 1} | {s.rate:,.0f} | {r.rate:,.0f} | {p:.0%} |"
            for i, (s, r, p) in enumerate(zip(seeder_runs, raw_runs, paired, strict=True))
        ),
        f"| **median** | **{seeder_median:,.0f}** | **{raw_median:,.0f}**"
        f" | **{statistics.median(paired):.0%}** |",
        "",
        f"Ratio of medians: **{ratio:.0%}** of raw COPY ({verdict} the 50 % target); the"
        " last column pairs each run's two measurements, taken back to back.",
        "",
        "Reproduce: `.venv/bin/python bench/seed.py"
        f" --users {args.users} --days {args.days} --runs {args.runs} --write`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
