"""Benchmark: a tenant's role DDL as the creating role's memberships grow.

A role that creates roles without being a superuser is made a member of each
one it creates (PostgreSQL 16+: with ADMIN OPTION), and the operator joins each
owner role too: two memberships per tenant. Every role statement checks the
creator's rights through its memberships, and a membership change anywhere (each
CREATE ROLE and GRANT is one) drops the cached list, so the next check reads all
of them again: the cost of a tenant's role DDL grows with the number of tenants.

Two sides on one durable server, the same statements per tenant (two roles,
their settings, the owner's membership, the schema and its REVOKE: the part of
the engine's batch that checks role rights), 4 connections at once as the
operator's workers:

* ``one creator``: every tenant made by the operator's own role, as today;
* ``16 creators``: each tenant made after ``SET ROLE`` to one of 16 roles the
  operator made (``NOLOGIN CREATEROLE``, joined with ``SET`` only, no
  ``INHERIT``), chosen by tenant: each creator holds a sixteenth of the
  memberships, and the operator itself only the 16.

Medians per fifth of the tenants. ``--write`` replaces the "Role DDL and the
creator's memberships" section of docs/benchmarks.md.

    .venv/bin/python bench/roles.py --tenants 2000 --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

HEADING = "## Role DDL and the creator's memberships"
WORKERS = 4
SHARDS = 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    sides: dict[str, list[float]] = {}
    durability = ""
    for side, shards in (("one creator", 0), (f"{SHARDS} creators", SHARDS)):
        with common.database() as db:  # a fresh server each: no memberships of the other
            durability = db.durability()
            sides[side] = run(db, args.tenants, shards)
    section = render(args.tenants, durability, sides, (load, os.getloadavg()[0]))
    print(section)
    if args.write:
        common.write_section(HEADING, section)
    return 0


def run(db: common.Database, count: int, shards: int) -> list[float]:
    """Seconds per tenant, in creation order, ``WORKERS`` at a time."""
    tag = f"r{uuid.uuid4().hex[:5]}"
    creators = [f"{tag}_creator_{k}" for k in range(shards)]
    with psycopg.connect(db.operator_url, autocommit=True) as conn:
        conn.execute("SET createrole_self_grant = ''")
        for creator in creators:
            conn.execute(
                sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE").format(sql.Identifier(creator))
            )
            conn.execute(
                sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT FALSE, SET TRUE").format(
                    sql.Identifier(creator)
                )
            )
        database = str(conn.info.dbname)
    if creators:
        with psycopg.connect(db.superuser_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.SQL(", ").join(map(sql.Identifier, creators))
                )
            )
    local = threading.local()
    opened: list[psycopg.Connection[tuple[object, ...]]] = []

    def one(index: int) -> float:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(db.operator_url, autocommit=True)
            opened.append(local.conn)
        creator = creators[index % shards] if creators else None
        return tenant(local.conn, f"{tag}_{index}", creator)

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for conn in opened:
            conn.close()


def tenant(conn: psycopg.Connection[tuple[object, ...]], name: str, creator: str | None) -> float:
    """One tenant's statements in one transaction (after ``SET LOCAL ROLE`` to its
    creator, if any, itself a check of the operator's memberships): seconds taken."""
    owner, login = sql.Identifier(f"{name}_owner"), sql.Identifier(f"{name}_login")
    statements = [sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(creator))] if creator else []
    statements += [
        sql.SQL("SET LOCAL createrole_self_grant = 'set, inherit'"),
        sql.SQL("CREATE ROLE {} NOLOGIN").format(owner),
        sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(login),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(login, owner),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(owner, owner),
        sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(owner, login),
        sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(owner, owner),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(owner),
    ]
    started = time.perf_counter()
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return time.perf_counter() - started


def render(
    count: int, durability: str, sides: dict[str, list[float]], load: tuple[float, float]
) -> str:
    fifth = count // 5
    spans = [(a, a + fifth) for a in range(0, fifth * 5, fifth)]
    lines = [
        HEADING,
        "",
        "`bench/roles.py`: one tenant's role statements (two roles, their settings, the owner's",
        "membership, the schema and its REVOKE) as the creating role's memberships grow,",
        f"{WORKERS} connections at once. Machine: {common.machine()}; embedded PostgreSQL,",
        f"durable ({durability}); load average {load[0]:.1f} at the start, {load[1]:.1f} at",
        "the end. Each side on a fresh server. Milliseconds per tenant (the creator's",
        "`SET LOCAL ROLE` included), median of each fifth:",
        "",
        "| tenants made before | " + " | ".join(sides) + " |",
        "|---|" + "---:|" * len(sides),
    ]
    for a, b in spans:
        cells = [f"{statistics.median(times[a:b]) * 1000:.1f}" for times in sides.values()]
        lines.append(f"| {a:,}-{b:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The operator makes every tenant with its own role today (`one creator`), which is",
        'why a burst slows as the fleet grows ("Scale" above). Sharding the creator cuts',
        "the growth, but not to nothing: the operator's own `SET ROLE` check still follows",
        "its memberships through each creator to the owner roles that creator may `SET`",
        "(`createrole_self_grant`), so a sharded design must also keep the creators from",
        "holding `SET` on what they make, or skip the switch for work that does not need it.",
        "",
        f"Reproduce: `.venv/bin/python bench/roles.py --tenants {count} --write`.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
