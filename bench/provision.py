"""Benchmark: provisioning N tenants through tenantdb.core against raw SQL.

For each isolation mode, each run provisions N fresh tenants twice:

* **core**: ``tenantdb.core.commands.provision`` per tenant (registry row,
  roles, schema or shared membership or database, grants, limits, the
  existence checks that make it idempotent), one transaction per tenant;
* **raw**: the same DDL written out by hand and sent with psycopg, one
  transaction per tenant, no checks (what a migration script would do); the
  statements on the tenant's own roles go through its creator's function, as
  the operator sends them (``core/creators.py``).

Both run as the non-superuser operator role on a durable server and do the
same work: a SCRAM verifier per login role (4096 iterations) and per owner
role (its derived password, ``passwords.ROLE_SCRAM_ITERATIONS``), the
creator's membership in the owner role (what lets the operator act for the
owner without superuser) and the owner's in the login role. The two alternate which
goes first; everything is dropped between runs (not timed, as the superuser). The report
gives each run, the medians, tenants/s and the ratio core/raw; ``--write``
replaces the "Provisioning" section of docs/benchmarks.md.

    .venv/bin/python bench/provision.py --tenants 1000 --database-tenants 20 --runs 3 --write
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connect_group, creators, naming, passwords, shared, tenancy
from tenantdb.settings import DEFAULT_PLANS

HEADING = "## Provisioning"
LIMITS = DEFAULT_PLANS["standard"]
SAFE = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
"""Attributes a role is created with."""
RESET = "NOCREATEDB NOCREATEROLE"
"""What a non-superuser may name in ALTER ROLE."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tenants", type=int, default=1000, help="tenants per run (schema, shared)"
    )
    parser.add_argument(
        "--database-tenants", type=int, default=20, help="tenants per run (database)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    with common.database() as db:
        args.durability = db.durability()
        server = common.open_server(db, "tenantdb-bench", 2)
        results = {}
        for mode in Isolation:
            count = args.database_tenants if mode is Isolation.DATABASE else args.tenants
            results[mode] = measure(db, server, mode, count, args.runs)
            core, raw = results[mode]
            print(
                f"{mode.value:9} n={count:5} core {common.median(core):7.2f}s"
                f"  raw {common.median(raw):7.2f}s  ratio {ratio(core, raw):.2f}",
                flush=True,
            )
        server.close()
    section = render(args, results)
    print(section)
    if args.write:
        common.write_section(HEADING, section)
    return 0


def measure(
    db: common.Database, server: commands.Server, mode: Isolation, count: int, runs: int
) -> tuple[list[float], list[float]]:
    core: list[float] = []
    raw: list[float] = []
    for run in range(runs):
        order: list[tuple[list[float], Callable[[commands.Server, Isolation, str, int], None]]] = [
            (core, provision_core),
            (raw, provision_raw),
        ]
        for samples, provision in order if run % 2 == 0 else reversed(order):
            prefix = f"b{uuid.uuid4().hex[:6]}"
            started = time.perf_counter()
            provision(server, mode, prefix, count)
            samples.append(time.perf_counter() - started)
            clean(db, prefix)
    return core, raw


def provision_core(server: commands.Server, mode: Isolation, prefix: str, count: int) -> None:
    for index in range(count):
        request = commands.TenantRequest(
            uid=str(uuid.uuid4()),
            name=f"{prefix}-{index}",
            namespace="bench",
            isolation=mode,
            plan="standard",
            limits=LIMITS,
        )
        commands.provision(server, request, passwords.generate(), reset_password=True)


def provision_raw(server: commands.Server, mode: Isolation, prefix: str, count: int) -> None:
    space = tenancy.shared_space(server, "bench")
    with psycopg.connect(server.url, autocommit=True) as conn:
        home = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        group = connect_group.role_name(conn.info.user)
        for index in range(count):
            uid = str(uuid.uuid4())
            names = naming.tenant_names(f"{prefix}-{index}", uid)
            verifier = passwords.scram_verifier(passwords.generate())
            owner_verifier = passwords.scram_verifier(
                passwords.role_password(server.sessions.key, names.owner_role),
                iterations=passwords.ROLE_SCRAM_ITERATIONS,
            )
            with conn.transaction():
                verifiers = (verifier, owner_verifier)
                statements = raw_statements(mode, names, uid, verifiers, (home, group), space)
                for statement in through_creator(statements, creators.pick(uid)):
                    conn.execute(statement)
            if mode is Isolation.DATABASE:
                create_database_raw(server.url, conn, names)


def raw_statements(
    mode: Isolation,
    n: naming.TenantNames,
    uid: str,
    verifiers: tuple[str, str],
    place: tuple[str, str],
    space: shared.Space,
) -> list[str]:
    """The DDL a hand-written provisioning script would send (trusted names, no checks);
    ``place``: the operator's database and the connect group its tenants join."""
    home, group = place
    schema = (
        space.schema
        if mode is Isolation.SHARED
        else ("public" if mode is Isolation.DATABASE else n.schema)
    )
    database = n.database if mode is Isolation.DATABASE else home
    owner = space.owner_role if mode is Isolation.SHARED else n.owner_role
    inherit = "INHERIT" if mode is Isolation.SHARED else "NOINHERIT"
    verifier, owner_verifier = verifiers
    statements = [
        "INSERT INTO tenantdb.tenants (uid, name, namespace, isolation, schema_name, database_name,"
        f" owner_role, login_role, plan) VALUES ('{uid}', '{n.schema}', 'bench', '{mode.value}',"
        f" '{schema}', '{database}', '{owner}', '{n.login_role}', 'standard')",
        f"CREATE ROLE \"{n.login_role}\" NOLOGIN NOINHERIT {SAFE} PASSWORD '{verifier}'",
        f'ALTER ROLE "{n.login_role}" LOGIN {inherit} {RESET} CONNECTION LIMIT {LIMITS.connection_limit}',
        f"ALTER ROLE \"{n.login_role}\" SET statement_timeout = '{LIMITS.statement_timeout}'",
        f'ALTER ROLE "{n.login_role}" RESET work_mem',
        f'ALTER ROLE "{n.login_role}" SET search_path = "{schema}"',
    ]
    if mode is Isolation.SHARED:
        return [
            *statements,
            f'GRANT "{group}" TO "{n.login_role}" WITH INHERIT TRUE, SET FALSE',
            f'GRANT "{n.login_role}" TO "{owner}" WITH INHERIT FALSE, SET TRUE',
            f'GRANT "{space.members_role}" TO "{n.login_role}" WITH INHERIT TRUE, SET FALSE',
            f"INSERT INTO \"{space.schema}\".tenant_roles VALUES ('{n.login_role}', '{uid}')",
        ]
    statements += [
        f"CREATE ROLE \"{n.owner_role}\" LOGIN NOINHERIT {SAFE} PASSWORD '{owner_verifier}'",
        f'GRANT "{n.owner_role}" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE',
        f'GRANT "{n.login_role}" TO "{n.owner_role}" WITH INHERIT FALSE, SET TRUE',
        f'ALTER ROLE "{n.owner_role}" SET search_path = "{schema}"',
    ]
    if mode is Isolation.SCHEMA:  # the operator's database is closed to PUBLIC
        statements.append(
            f'GRANT "{group}" TO "{n.login_role}", "{owner}" WITH INHERIT TRUE, SET FALSE'
        )
    if mode is Isolation.SCHEMA:
        statements += [
            f'CREATE SCHEMA "{n.schema}" AUTHORIZATION "{n.owner_role}"',
            f'REVOKE ALL ON SCHEMA "{n.schema}" FROM PUBLIC',
            f'GRANT USAGE ON SCHEMA "{n.schema}" TO "{n.login_role}"',
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{n.owner_role}" IN SCHEMA "{n.schema}"'
            f' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{n.login_role}"',
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{n.owner_role}" IN SCHEMA "{n.schema}"'
            f' GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "{n.login_role}"',
        ]
    return statements


OPERATORS_OWN = ("INSERT INTO", 'GRANT "tenantdb_shared')
"""Raw statements on what the operator itself holds (the registry, a shared space's
group): the rest act on the tenant's own roles, the connect group's membership too."""


def through_creator(statements: list[str], function: str) -> list[str]:
    """The statements as the operator sends them: those on the tenant's own roles first,
    in one call of its creator's function (``core/creators.py``), which joins the
    creator to the owner as it is made (the operator's own GRANT of it goes)."""
    own, operators = [], []
    for statement in statements:
        if statement.startswith(OPERATORS_OWN):
            operators.append(statement)
        elif statement.startswith("CREATE ROLE") and statement.split()[2].endswith('_owner"'):
            own.append(
                f"SET LOCAL createrole_self_grant = 'set, inherit';\n{statement};\n"
                "SET LOCAL createrole_self_grant = ''"
            )
        elif "TO CURRENT_USER" not in statement:
            own.append(statement)
    batch = ";\n".join(own).replace("'", "''")
    return [f"SELECT tenantdb.{function}('{batch}')", *operators]


def create_database_raw(url: str, conn: psycopg.Connection, n: naming.TenantNames) -> None:
    conn.execute(f'CREATE DATABASE "{n.database}" OWNER "{n.owner_role}"')
    conn.execute(f'REVOKE ALL ON DATABASE "{n.database}" FROM PUBLIC')
    conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{n.database}" TO "{n.login_role}"')
    with psycopg.connect(psycopg.conninfo.make_conninfo(url, dbname=n.database)) as tenant_db:
        tenant_db.execute(f'ALTER SCHEMA public OWNER TO "{n.owner_role}"')
        tenant_db.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        tenant_db.execute(f'GRANT USAGE ON SCHEMA public TO "{n.login_role}"')
        tenant_db.execute(
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{n.owner_role}" IN SCHEMA public'
            f' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{n.login_role}"'
        )


def clean(db: common.Database, prefix: str) -> None:
    """Drop everything a run made (not timed), as the superuser."""
    like = f"t_{prefix}%"
    with psycopg.connect(db.superuser_url, autocommit=True) as conn:
        for (database,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)
        ).fetchall():
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        for (schema,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (like,)
        ).fetchall():
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        roles = [
            r
            for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (like,))
        ]
        for start in range(0, len(roles), 200):
            batch = ", ".join(f'"{r}"' for r in roles[start : start + 200])
            conn.execute(f"DROP OWNED BY {batch} CASCADE")
            conn.execute(f"DROP ROLE {batch}")
        for (schema,) in conn.execute(
            "SELECT schema_name FROM tenantdb.shared_spaces WHERE namespace = 'bench'"
        ).fetchall():
            conn.execute(f'DELETE FROM "{schema}".tenant_roles WHERE role_name LIKE %s', (like,))
        conn.execute("DELETE FROM tenantdb.tenants WHERE login_role LIKE %s", (like,))


def ratio(core: list[float], raw: list[float]) -> float:
    return common.median(core) / common.median(raw)


def render(
    args: argparse.Namespace, results: dict[Isolation, tuple[list[float], list[float]]]
) -> str:
    lines = [
        HEADING,
        "",
        "`bench/provision.py`: N tenants provisioned through `tenantdb.core` against the same DDL",
        "sent by hand with psycopg (one transaction per tenant each), alternating, in the same run.",
        "Both run as the non-superuser operator role and compute the same SCRAM verifiers",
        "(the login role's at 4096 iterations, the owner role's derived password at 64).",
        f"Runs: {args.runs}; machine: {common.machine()}; embedded PostgreSQL, durable",
        f"({args.durability}); load average {args.load:.1f} at the start,"
        f" {os.getloadavg()[0]:.1f} at the end. Target: core ≤ 1.5x raw.",
        "",
        "| mode | tenants per run | core median (s) | raw median (s) | core tenants/s | ratio core/raw |",
        "|---|---|---|---|---|---|",
    ]
    for mode, (core, raw) in results.items():
        count = args.database_tenants if mode is Isolation.DATABASE else args.tenants
        lines.append(
            f"| {mode.value} | {count} | {common.median(core):.2f} | {common.median(raw):.2f}"
            f" | {count / common.median(core):.0f} | {ratio(core, raw):.2f} |"
        )
    lines += [
        "",
        "Core does more than the raw script: it checks whether each role exists (idempotency),",
        "takes the tenant's lock row, revokes stray memberships and reads the registry first;",
        "for a shared tenant it also looks up its namespace's shared space and computes the",
        "tenant's token (an HMAC in PL/pgSQL on the server) for its Secret.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
