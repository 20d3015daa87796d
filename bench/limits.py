"""Benchmark: how one PostgreSQL server fares as its tenants grow, for per-server limits.

One durable server grows step by step (``--steps`` schema tenants, then
``--database-steps`` database tenants). Between steps it is filled with raw
DDL, untimed: per tenant the roles, grants and schema the engine makes, and
``--tables`` tables (a primary key and a text column: three relations and a
TOAST pair each), so the catalog holds what a real SaaS's would. At each
step, with the engine on the operator's role:

* provisioning: ``--sample`` more tenants through ``commands.provision``
  (4 threads, as the operator's workers), milliseconds per tenant;
* verification: ``commands.verify_isolation`` of those tenants, per tenant;
* the usage sweep (``usage.Survey.sweep``, every tenant; median of 3);
* one tenant's backup (``taking.take``, median of 3 tenants; pg_dump reads
  the catalog of the whole database, whatever it dumps);
* the catalog: relations, roles, ``pg_catalog``'s size, and a fresh
  session's ``CacheMemoryContext`` after one verification of every sample
  tenant (each backend that touches many tenants pays it);
* for database tenants: disk per database and what a new one costs.

``--write`` replaces the "Limits per server" section of docs/benchmarks.md.

    .venv/bin/python bench/limits.py --steps 1000 5000 10000 --database-steps 50 200 --write
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import provision

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connect_group, naming, passwords, tenancy, usage
from tenantdb.core.backups import storage, taking

HEADING = "## Limits per server"
WORKERS = 4
REPEATS = 3
"""The usage sweep and the backup are timed this many times (the median is quoted)."""
FILL_BATCH = 100
CATALOG = """
SELECT (SELECT count(*) FROM pg_catalog.pg_class),
       (SELECT count(*) FROM pg_catalog.pg_roles),
       (SELECT sum(pg_catalog.pg_total_relation_size(c.oid)) FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'pg_catalog'::regnamespace),
       (SELECT sum(pg_catalog.pg_database_size(d.datname)) FROM pg_catalog.pg_database d)
"""
CACHE = """
SELECT coalesce(sum(c.total_bytes), 0)
FROM pg_catalog.pg_backend_memory_contexts c,
     (SELECT path[level] AS id, level FROM pg_catalog.pg_backend_memory_contexts
       WHERE name = 'CacheMemoryContext') cache
WHERE c.path[cache.level] = cache.id
"""
"""The catalog caches of this session: CacheMemoryContext and its children (PostgreSQL 18)."""


@dataclass
class Step:
    """What one server looked like at one size, and what the engine took there."""

    mode: str
    tenants: int
    provision_ms: float
    verify_ms: float
    sweep_s: float
    backup_s: float
    relations: int
    roles: int
    catalog_mb: float
    disk_mb: float
    cache_mb: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--database-steps", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--tables", type=int, default=5, help="tables per filled tenant")
    parser.add_argument("--sample", type=int, default=100, help="tenants measured per step")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    steps: list[Step] = []
    with common.database() as db, tempfile.TemporaryDirectory() as archives:
        args.durability = db.durability()
        server = common.open_server(db, "tenantdb-bench-limits", WORKERS + 1)
        try:
            steps += grow(db, server, Isolation.SCHEMA, args.steps, args, Path(archives))
            samples = max(args.sample // 10, 5)
            sized = argparse.Namespace(**{**vars(args), "sample": samples, "tables": 0})
            steps += grow(db, server, Isolation.DATABASE, args.database_steps, sized, None)
        finally:
            server.close()
    section = render(args, steps)
    print(section)
    if args.write:
        common.write_section(HEADING, section)
    return 0


def grow(
    db: common.Database,
    server: commands.Server,
    mode: Isolation,
    sizes: list[int],
    args: argparse.Namespace,
    archives: Path | None,
) -> list[Step]:
    """Fill to each size (minus the sample), then measure the sample's provisioning."""
    found, made = [], count_tenants(server, mode)
    for size in sizes:
        if mode is Isolation.SCHEMA:
            fill(db, server, max(size - args.sample - made, 0), args.tables)
        else:
            missing = max(size - args.sample - made, 0)
            provision_many(server, mode, f"f{uuid.uuid4().hex[:5]}", missing)
        prefix = f"s{uuid.uuid4().hex[:5]}"
        started = time.perf_counter()
        sample = provision_many(server, mode, prefix, args.sample)
        provisioned = (time.perf_counter() - started) / len(sample) * 1000
        made = count_tenants(server, mode)
        step = measure(db, server, mode, made, sample, provisioned, archives)
        print(step, flush=True)
        found.append(step)
    return found


def provision_many(
    server: commands.Server, mode: Isolation, prefix: str, count: int
) -> list[tuple[str, str]]:
    """``count`` tenants through the engine, ``WORKERS`` at a time; their UIDs and names."""

    def one(index: int) -> tuple[str, str]:
        uid, name = str(uuid.uuid4()), f"{prefix}-{index}"
        request = commands.TenantRequest(
            uid=uid,
            name=name,
            namespace="limits",
            isolation=mode,
            plan="standard",
            limits=provision.LIMITS,
        )
        commands.provision(server, request, passwords.generate(), reset_password=True)
        return uid, name

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, range(count)))


def fill(db: common.Database, server: commands.Server, count: int, tables: int) -> None:
    """``count`` schema tenants by raw DDL (one verifier for all: nobody logs in as them)."""
    verifiers = (passwords.scram_verifier(passwords.generate()),) * 2
    space = tenancy.shared_space(server, "limits")
    with server.pool.connection() as operator:
        group = connect_group.role_name(operator.info.user)

    def batch(first: int) -> None:
        with psycopg.connect(db.superuser_url, autocommit=True) as conn, conn.transaction():
            place = (str(conn.info.dbname), group)
            for _ in range(first, min(first + FILL_BATCH, count)):
                uid = str(uuid.uuid4())
                names = naming.tenant_names(f"fill-{uuid.uuid4().hex[:8]}", uid)
                statements = provision.raw_statements(
                    Isolation.SCHEMA, names, uid, verifiers, place, space
                )
                statements[0] = statements[0].replace("'bench'", "'limits'")
                for statement in statements:
                    conn.execute(statement)
                for table in range(tables):
                    conn.execute(
                        sql.SQL("CREATE TABLE {}.{} (id bigint PRIMARY KEY, body text)").format(
                            sql.Identifier(names.schema), sql.Identifier(f"t{table}")
                        )
                    )

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(batch, range(0, count, FILL_BATCH)))


def count_tenants(server: commands.Server, mode: Isolation) -> int:
    with server.pool.connection() as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE isolation = %s").format(
                sql.Identifier(server.control_schema, "tenants")
            ),
            (mode.value,),
        ).fetchone()
    return int(row[0]) if row else 0


def measure(
    db: common.Database,
    server: commands.Server,
    mode: Isolation,
    tenants: int,
    sample: list[tuple[str, str]],
    provision_ms: float,
    archives: Path | None,
) -> Step:
    started = time.perf_counter()
    for uid, name in sample:
        commands.verify_isolation(server, uid, name)
    verify_ms = (time.perf_counter() - started) / len(sample) * 1000
    sweep_s = common.median([timed(lambda: usage.Survey().sweep(server)) for _ in range(REPEATS)])
    backup_s = 0.0
    if archives is not None:
        backup_s = common.median([backup(server, uid, archives) for uid, _ in sample[:REPEATS]])
    with psycopg.connect(db.operator_url, autocommit=True) as conn:
        row = conn.execute(CATALOG).fetchone()
    assert row is not None
    relations, roles, catalog, disk = row
    cache = cache_after_verifying(db, sample)
    return Step(
        mode.value,
        tenants,
        provision_ms,
        verify_ms,
        sweep_s,
        backup_s,
        int(relations),
        int(roles),
        int(catalog) / 2**20,
        int(disk) / 2**20,
        cache / 2**20,
    )


def timed(call: Callable[[], object]) -> float:
    """Seconds ``call`` took."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def backup(server: commands.Server, uid: str, archives: Path) -> float:
    """Seconds one tenant's archive takes (zstd, to a directory)."""
    store = storage.VolumeStorage(archives)
    location = f"limits/{uuid.uuid4().hex}"
    started = time.perf_counter()
    taking.take(server, uid, store, location, taking.Options(compression="zstd"))
    return time.perf_counter() - started


def cache_after_verifying(db: common.Database, sample: list[tuple[str, str]]) -> int:
    """A fresh operator session's catalog caches after it verified every sample tenant."""
    one = commands.open_server(db.settings(pool_min_size=1, pool_max_size=1), "limits-cache", 1)
    try:
        for uid, name in sample:
            commands.verify_isolation(one, uid, name)
        with one.pool.connection() as conn:
            row = conn.execute(CACHE).fetchone()
        return int(row[0]) if row else 0
    finally:
        one.close()


def render(args: argparse.Namespace, steps: list[Step]) -> str:
    rows = "\n".join(
        f"| {s.mode} | {s.tenants:,} | {s.relations:,} | {s.roles:,} | {s.catalog_mb:.0f} |"
        f" {s.disk_mb:,.0f} | {s.provision_ms:.0f} | {s.verify_ms:.1f} | {s.sweep_s:.2f} |"
        f" {f'{s.backup_s:.2f}' if s.backup_s else '-'} | {s.cache_mb:.1f} |"
        for s in steps
    )
    return f"""{HEADING}

`bench/limits.py`: one server grown step by step; between steps filled with raw DDL
(each schema tenant: its roles, grants, schema and {args.tables} tables), at each step
{args.sample} more tenants provisioned by the engine (4 threads) and measured.
The filler is made by a superuser, so the operator's role is a member of none of its
roles: "provision" is a new tenant's cost on a server that large, not on one whose
tenants the operator made, which is higher (see "Role DDL and the creator's memberships").
Machine: {common.machine()}; embedded PostgreSQL, durable ({args.durability});
load average {args.load:.1f} at the start.

| mode | tenants | relations | roles | pg_catalog (MB) | disk (MB) | provision (ms per tenant, 4 at once) | verify (ms/tenant) | usage sweep (s) | one backup (s) | catalog caches of one session (MB) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Reproduce: `.venv/bin/python bench/limits.py --steps {_sizes(steps, "schema")} --database-steps {_sizes(steps, "database")} --tables {args.tables} --write`.
"""


def _sizes(steps: list[Step], mode: str) -> str:
    return " ".join(str(s.tenants) for s in steps if s.mode == mode)


if __name__ == "__main__":
    raise SystemExit(main())
