"""What one usage sweep costs at many tenants: ``usage.Survey.sweep`` against one query per tenant.

Tenants are made with raw DDL (a registry row and a schema with two tables of
one row each: 8 relations with their keys and TOAST), in batches, so that
10,000 take minutes, not hours. The survey's two catalog queries are timed
apart and together (the whole sweep); the baseline asks the same questions of
each tenant in turn (size and tables of its schema), over a sample, and is
scaled to every tenant. Medians of ``--runs``.

Run: ``.venv/bin/python bench/usage.py --tenants 10000 --runs 7 --write``.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import common
import psycopg
from psycopg import sql

from tenantdb.core import usage

HEADING = "## Usage survey"
BATCH = 250
SAMPLE = 200
"""Tenants the per-tenant baseline visits per run (its figure is scaled to all of them)."""
PER_TENANT = """
SELECT sum(pg_catalog.pg_total_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm')),
       count(*) FILTER (WHERE c.relkind IN ('r', 'p'))
FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.to_regnamespace(%s)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="replace the section in docs/")
    args = parser.parse_args()
    with common.database() as db:
        server = common.open_server(db, "bench-usage", 2)
        try:
            made = make_tenants(db, server, args.tenants)
            figures = measure(server, args.runs)
        finally:
            server.close()
        relations = count_relations(db)
    section = render(args, made, relations, figures)
    print(section)
    if args.write:
        common.write_section(HEADING, section)
    return 0


def make_tenants(db: common.Database, server: common.commands.Server, count: int) -> float:
    """``count`` schema tenants by raw DDL; the seconds it took."""
    started = time.monotonic()
    tenants = sql.Identifier(server.control_schema, "tenants")
    with psycopg.connect(db.operator_url, autocommit=True) as conn:
        database = conn.info.dbname
        for first in range(0, count, BATCH):
            with conn.transaction():
                for number in range(first, min(first + BATCH, count)):
                    uid = str(uuid.uuid4())
                    schema = sql.Identifier(f"bench_u_{number}")
                    conn.execute(
                        sql.SQL(
                            "CREATE SCHEMA {s};"
                            " CREATE TABLE {s}.a (id bigint PRIMARY KEY, body text);"
                            " CREATE TABLE {s}.b (id bigint PRIMARY KEY, body text);"
                            " INSERT INTO {s}.a VALUES (1, 'x'); INSERT INTO {s}.b VALUES (1, 'y')"
                        ).format(s=schema)
                    )
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (uid, name, namespace, isolation, schema_name,"
                            " database_name, owner_role, login_role, plan)"
                            " VALUES (%s, %s, 'bench', 'schema', %s, %s, %s, %s, 'free')"
                        ).format(tenants),
                        (
                            uid,
                            f"t{number}",
                            f"bench_u_{number}",
                            database,
                            f"bench_o_{number}",
                            f"bench_l_{number}",
                        ),
                    )
    return time.monotonic() - started


def measure(server: common.commands.Server, runs: int) -> dict[str, list[float]]:
    """Each query, the whole sweep and the per-tenant baseline, alternating, ``runs`` times."""
    params = {"namespace": None, "uid": None, "bookkeeping": list(usage.BOOKKEEPING)}
    samples: dict[str, list[float]] = {k: [] for k in ("catalog", "activity", "sweep", "per")}
    with server.pool.connection() as conn:
        schemas = [
            r[0]
            for r in conn.execute(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bench_u_%%'"
                " ORDER BY random() LIMIT %s",
                (SAMPLE,),
            )
        ]
        total = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(server.control_schema, "tenants")
            )
        ).fetchone()
    tenants = int(total[0]) if total else 0
    for _ in range(runs):
        with server.pool.connection() as conn:
            started = time.perf_counter()
            conn.execute(usage.catalog_query(server.control_schema), params).fetchall()
            samples["catalog"].append(time.perf_counter() - started)
            started = time.perf_counter()
            conn.execute(usage.activity_query(server.control_schema)).fetchall()
            samples["activity"].append(time.perf_counter() - started)
            started = time.perf_counter()
            for schema in schemas:
                conn.execute(PER_TENANT, (schema,)).fetchone()
            samples["per"].append((time.perf_counter() - started) * tenants / len(schemas))
        started = time.perf_counter()
        found = usage.Survey().sweep(server)
        samples["sweep"].append(time.perf_counter() - started)
        assert len(found) == tenants
    samples["tenants"] = [float(tenants)]
    return samples


def count_relations(db: common.Database) -> int:
    with psycopg.connect(db.operator_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_class").fetchone()
    return int(row[0]) if row else 0


def render(
    args: argparse.Namespace, made: float, relations: int, figures: dict[str, list[float]]
) -> str:
    tenants = int(figures["tenants"][0])

    def ms(key: str) -> str:
        return f"{common.median(figures[key]) * 1000:.0f}"

    def spread(key: str) -> str:
        return f"{min(figures[key]) * 1000:.0f}–{max(figures[key]) * 1000:.0f}"

    sweep = common.median(figures["sweep"])
    per = common.median(figures["per"])
    return f"""{HEADING}

`bench/usage.py`: what one sweep of the usage survey (`core.usage.Survey.sweep`,
docs/operations.md) costs on a server with {tenants:,} `schema` tenants, each a schema with
two tables of one row (with keys and TOAST: {relations:,} relations in `pg_class`), made
with raw DDL in {made:.0f} s. The per-tenant baseline asks each tenant's schema for its size
and tables in turn (one query per tenant, over {SAMPLE} random tenants per run, scaled to all).
{args.runs} runs, medians. Machine: {common.machine()}; load average {os.getloadavg()[0]:.1f}.

| query | median (ms) | range (ms) |
|---|---:|---:|
| catalog query (size, tables, invalid indexes, limits of every tenant) | **{ms("catalog")}** | {spread("catalog")} |
| activity query (`pg_stat_activity` by login role) | **{ms("activity")}** | {spread("activity")} |
| whole sweep (both, rows read into `TenantUsage`) | **{ms("sweep")}** | {spread("sweep")} |
| baseline: one query per tenant, scaled to {tenants:,} | {ms("per")} | {spread("per")} |

- A sweep is 2 statements whatever the number of tenants (plus one visit per `database`
  tenant in turn, `TENANTDB_USAGE_DATABASE_VISITS`, none here); at the default interval of
  60 s it keeps one connection busy {sweep / 60:.1%} of the time.
- One query per tenant would take {per / sweep:.1f}× as long ({tenants:,} round trips).
- The cost grows with the relations, not the tenants: `pg_total_relation_size` looks at
  every relation's files ({relations / max(sweep, 1e-9) / 1000:.0f}k relations/s here).

Reproduce: `.venv/bin/python bench/usage.py --tenants {tenants} --runs {args.runs} --write`.
"""


if __name__ == "__main__":
    raise SystemExit(main())
