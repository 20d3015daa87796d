"""Benchmark: a tenant's role DDL as the creating role's memberships grow.

A role that creates roles without being a superuser is made a member of each
one it creates (PostgreSQL 16+: with ADMIN OPTION), and the operator joins each
owner role too: two memberships per tenant. Every role statement checks the
creator's rights through its memberships, and a membership change anywhere (each
CREATE ROLE and GRANT is one) drops the cached list, so the next check reads all
of them again: the cost of a tenant's role DDL grows with the number of tenants.

Three sides, each on a fresh durable server, the same statements per tenant
(two roles, their settings, the owner's membership, the schema and its REVOKE:
the part of the engine's batch that checks role rights), 4 connections at once
as the operator's workers:

* ``one creator``: every tenant made by the operator's own role (tenantdb
  before ``core/creators.py``);
* ``16 creators, SET ROLE``: each tenant made after ``SET LOCAL ROLE`` to one of
  16 roles the operator made (``NOLOGIN CREATEROLE``), chosen by tenant: each
  creator holds a sixteenth of the memberships, but the switch itself checks
  the operator's, which reach through every creator;
* ``32 creators, function``: what the operator does now, with its own code
  (``creators.prepare`` and ``creators.run_as``): the statements go through the
  creator's ``SECURITY DEFINER`` function, and nothing checks the operator's
  memberships.

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

from tenantdb.core import creators, naming

HEADING = "## Role DDL and the creator's memberships"
WORKERS = 4
SHARDS = 16
CONTROL = naming.identifier("bench_control")
SIDES = {
    "one creator": "operator",
    f"{SHARDS} creators, SET ROLE": "set role",
    f"{creators.COUNT} creators, function": "function",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    sides: dict[str, list[float]] = {}
    durability = ""
    for side, how in SIDES.items():
        with common.database() as db:  # a fresh server each: no memberships of the other
            durability = db.durability()
            sides[side] = run(db, args.tenants, how)
    section = render(args.tenants, durability, sides, (load, os.getloadavg()[0]))
    print(section)
    if args.write:
        common.write_section(HEADING, section)
    return 0


def run(db: common.Database, count: int, how: str) -> list[float]:
    """Seconds per tenant, in creation order, ``WORKERS`` at a time."""
    tag = f"r{uuid.uuid4().hex[:5]}"
    set_roles = [f"{tag}_creator_{k}" for k in range(SHARDS)] if how == "set role" else []
    with psycopg.connect(db.operator_url, autocommit=True) as conn:
        if how == "function":
            with conn.transaction():
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(CONTROL)))
                creators.prepare(conn, CONTROL)
        conn.execute("SET createrole_self_grant = 'set, inherit'")
        for creator in set_roles:
            conn.execute(
                sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE").format(sql.Identifier(creator))
            )
        database = str(conn.info.dbname)
    if set_roles:
        with psycopg.connect(db.superuser_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.SQL(", ").join(map(sql.Identifier, set_roles))
                )
            )
    local = threading.local()
    opened: list[psycopg.Connection[tuple[object, ...]]] = []

    def one(index: int) -> float:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(db.operator_url, autocommit=True)
            opened.append(local.conn)
        name = f"{tag}_{index}"
        if how == "function":
            return tenant(local.conn, name, function=creators.pick(name))
        return tenant(local.conn, name, set_role=set_roles[index % SHARDS] if set_roles else None)

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for conn in opened:
            conn.close()


def tenant(
    conn: psycopg.Connection[tuple[object, ...]],
    name: str,
    set_role: str | None = None,
    function: str | None = None,
) -> float:
    """One tenant's statements in one transaction and one message (after ``SET LOCAL
    ROLE`` to its creator, itself a check of the operator's memberships, or through its
    creator's function): seconds taken."""
    owner, login = sql.Identifier(f"{name}_owner"), sql.Identifier(f"{name}_login")
    statements: list[sql.Composable] = [
        sql.SQL("SET LOCAL createrole_self_grant = 'set, inherit'"),
        sql.SQL("CREATE ROLE {} NOLOGIN").format(owner),
        sql.SQL("SET LOCAL createrole_self_grant = ''"),
        sql.SQL("CREATE ROLE {} LOGIN NOINHERIT").format(login),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(login, owner),
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(owner, owner),
        sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(owner, login),
        sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(owner, owner),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(owner),
    ]
    if set_role:
        statements.insert(0, sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(set_role)))
    started = time.perf_counter()
    with conn.transaction():
        # one message, as the engine sends its batch
        psycopg.ClientCursor(conn).execute(creators.run_as(conn, CONTROL, function, statements))
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
        "the end. Each side on a fresh server. Milliseconds per tenant (the switch to",
        "the creator included), median of each fifth:",
        "",
        "| tenants made before | " + " | ".join(sides) + " |",
        "|---|" + "---:|" * len(sides),
    ]
    for a, b in spans:
        cells = [f"{statistics.median(times[a:b]) * 1000:.1f}" for times in sides.values()]
        lines.append(f"| {a:,}-{b:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "With one creator each tenant's statements cost in proportion to the tenants made",
        "before it. Switching to one of 16 creators with `SET ROLE` cuts the growth, but",
        "not to nothing: the switch checks the operator's own memberships, which reach",
        "through each creator to the owner roles that creator may `SET`",
        "(`createrole_self_grant`). The operator therefore calls each creator's `SECURITY",
        "DEFINER` function instead (`core/creators.py`): no check walks the operator's",
        "memberships, and each check inside walks one creator's share.",
        "",
        f"Reproduce: `.venv/bin/python bench/roles.py --tenants {count} --write`.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
