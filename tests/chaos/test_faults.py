"""Faults during a rollout over every Tenant, and convergence with no manual step.

Each test injects one kind of fault while a Migration rolls out to the
world's Tenants (conftest.py): SIGKILLs of the operator at random points,
PostgreSQL down while the operator restarts, a kube-apiserver restart, the link to PostgreSQL cut
for ``CUT_SECONDS``. A Tenant is created while the fault lasts. Afterwards
``converged`` waits for the Migration and every Tenant, then checks what
must hold whatever happened: every tenant migrated exactly once and whole,
every Secret's password the one its role logs in with, no role, schema or
database without a Tenant, no registry row without one.

A migration's ``up`` creates a table, inserts a row, sleeps and adds a
column: a tenant migrated twice fails on the CREATE, one migrated half has a
table without the column or without its row.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from tenantdb.core.migrations import markers
from tests.chaos.conftest import (
    CUT_SECONDS,
    KILLS,
    TENANTS,
    World,
    tenant_documents,
    wait_all_ready,
)
from tests.e2e.support import eventually

pytestmark = [pytest.mark.chaos, pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
PARALLEL = 4
CONVERGENCE = 170
"""Seconds a rollout and every Tenant get to converge after the fault ended."""


def script(version: int, pause: float) -> str:
    table = f"chaos_v{version}"
    return (
        f"CREATE TABLE {table} (id int PRIMARY KEY);\n"
        f"INSERT INTO {table} VALUES (1);\n"
        f"SELECT pg_sleep({pause});\n"
        f"ALTER TABLE {table} ADD COLUMN c int NOT NULL DEFAULT 7;"
    )


def roll_out(world: World, version: int, pause: float) -> None:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": f"chaos-v{version}"},
        "spec": {
            "version": version,
            "up": script(version, pause),
            "strategy": {"maxParallel": PARALLEL},
        },
    }
    world.kubectl.apply(yaml.safe_dump(body))


def ledger(world: World, version: int) -> dict[str, tuple[str, int]]:
    with world.admin() as admin:
        rows = admin.execute(
            "SELECT tenant_name, state, attempts FROM tenantdb.migration_ledger"
            " WHERE namespace = %s AND version = %s",
            (world.kubectl.namespace, version),
        ).fetchall()
    return {name: (state, attempts) for name, state, attempts in rows}


def registry(world: World) -> list[dict[str, Any]]:
    with world.admin() as admin, admin.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT uid, name, schema_name, database_name, owner_role, login_role"
            " FROM tenantdb.tenants WHERE namespace = %s",
            (world.kubectl.namespace,),
        ).fetchall()


def started(world: World, version: int, at_least: int = 1) -> None:
    """Wait until the rollout has applied ``at_least`` tenants: the fault lands mid-rollout."""
    eventually(lambda: len(ledger(world, version)) >= at_least, timeout=120)


def assert_whole_or_untouched(world: World, version: int, context: str) -> None:
    """Every tenant has all of ``version``'s change, recorded, or none of it."""
    states = ledger(world, version)
    table = f"chaos_v{version}"
    with world.admin() as admin:
        for row in registry(world):
            name, schema = row["name"], row["schema_name"]
            relation = f'"{schema}".{table}'
            if not admin.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()[0]:
                assert states.get(name, ("retry", 0))[0] == "retry", f"{name} ({context})"
                continue
            assert admin.execute(f"SELECT id, c FROM {relation}").fetchall() == [(1, 7)], context
            if states.get(name, ("", 0))[0] != "applied":
                marker = admin.execute(
                    f'SELECT count(*) FROM "{schema}".{markers.MARKER_TABLE} WHERE version = %s',
                    (version,),
                ).fetchone()[0]
                assert marker == 1, f"{name}: the change without a ledger row or marker ({context})"


def converged(world: World, version: int, context: str) -> float:
    """Wait for the rollout and every Tenant, check the invariants; seconds it took."""
    began = time.monotonic()
    world.kubectl.wait(
        f"migration/chaos-v{version}", "jsonpath={.status.phase}=Succeeded", timeout=CONVERGENCE
    )
    wait_all_ready(world.kubectl, timeout=CONVERGENCE)
    took = time.monotonic() - began
    tenants = registry(world)
    objects = json.loads(world.kubectl.run("get", "tenants", "-o", "json").stdout)["items"]
    assert {t["uid"] for t in tenants} == {o["metadata"]["uid"] for o in objects}, context
    for earlier in range(1, version + 1):
        states = ledger(world, earlier)
        assert {name: state for name, (state, _) in states.items()} == {
            t["name"]: "applied" for t in tenants
        }, f"v{earlier} ({context})"
        assert_whole_or_untouched(world, earlier, context)
    assert_no_orphans(world, tenants, context)
    assert_secrets_log_in(world, objects, context)
    return took


def assert_no_orphans(world: World, tenants: list[dict[str, Any]], context: str) -> None:
    with world.admin() as admin:
        roles = {r for (r,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname ~ '^t_'")}
        schemas = {
            s for (s,) in admin.execute("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t_'")
        }
        databases = {
            d for (d,) in admin.execute("SELECT datname FROM pg_database WHERE datname ~ '^t_'")
        }
    assert roles == {t[k] for t in tenants for k in ("owner_role", "login_role")}, context
    assert schemas == {t["schema_name"] for t in tenants}, context
    assert databases == set(), context  # schema tenants only


def assert_secrets_log_in(world: World, objects: list[dict[str, Any]], context: str) -> None:
    """Each Tenant's Secret logs in as its role, at the server itself."""
    raw = json.loads(world.kubectl.run("get", "secrets", "-o", "json").stdout)["items"]
    secrets = {s["metadata"]["name"]: s["data"] for s in raw}
    for obj in objects:
        data = secrets[obj["status"]["credentialsSecret"]]
        creds = {k: base64.b64decode(v).decode() for k, v in data.items()}
        url = psycopg.conninfo.make_conninfo(
            world.database.superuser_url(creds["database"]),
            user=creds["username"],
            password=creds["password"],
        )
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (creds["username"],), context


def test_sigkill_at_random_points_of_a_rollout(world: World) -> None:
    seed = uuid.uuid4().int % 10_000
    chance = random.Random(seed)
    # Enough work that every kill lands mid-rollout: PARALLEL workers, TENANTS tenants.
    roll_out(world, 1, pause=round(0.02 * KILLS, 2))
    started(world, 1)
    kills = 0
    try:
        for _ in range(KILLS):
            time.sleep(chance.uniform(0.2, 1.5))  # the kill point, not a wait for a condition
            if len(ledger(world, 1)) == TENANTS:
                break
            world.operator.kill()
            kills += 1
            assert_whole_or_untouched(world, 1, f"after kill {kills}, seed {seed}")
            world.operator.start()
    finally:
        if world.operator.pid is None:
            world.operator.start()
    assert kills >= min(KILLS, 3), f"the rollout finished after {kills} kills (seed {seed})"
    took = converged(world, 1, f"seed {seed}")
    attempts = {name: n for name, (_, n) in ledger(world, 1).items()}
    assert set(attempts.values()) == {1}, f"applied more than once: {attempts} (seed {seed})"
    world.record("SIGKILL of the operator", f"{kills} times during the rollout", took)


def test_postgres_down_while_the_operator_restarts(world: World) -> None:
    """PostgreSQL goes down mid-rollout and the operator restarts before it is back: the
    new process sees every object while it cannot connect, and must still serve them
    all once it can (kopf's memo copies made before the runtime existed)."""
    roll_out(world, 2, pause=0.1)
    started(world, 2, at_least=10)
    world.database.stop()
    world.operator.kill()
    world.operator.start(ready=False)
    world.kubectl.apply(tenant_documents(["late-postgres"]))
    unserved = "[chaos/late-postgres] waiting: "  # its reconcile ran, and waits (requeue)
    eventually(lambda: unserved in world.operator.log_path.read_text(), timeout=60)
    world.start_database()
    took = converged(world, 2, "PostgreSQL down while the operator restarted")
    world.record(
        "PostgreSQL down, operator restarted meanwhile",
        "fast shutdown mid-rollout; SIGKILL and start while down; start",
        took,
    )


def test_api_server_restart_mid_rollout(world: World) -> None:
    roll_out(world, 3, pause=0.1)
    started(world, 3, at_least=10)
    world.plane.restart_api_server()
    world.kubectl.apply(tenant_documents(["late-api"]))
    took = converged(world, 3, "kube-apiserver restarted")
    world.record("kube-apiserver restart", "stop and start, mid-rollout", took)


def test_network_cut_to_postgres(world: World) -> None:
    roll_out(world, 4, pause=0.1)
    started(world, 4, at_least=10)
    world.link.cut()
    try:
        world.kubectl.apply(tenant_documents(["late-network"]))
        time.sleep(CUT_SECONDS)  # the fault's length: nothing flows, nothing is reset
    finally:
        world.link.restore()
    took = converged(world, 4, "link to PostgreSQL cut")
    world.record("network cut to PostgreSQL", f"{CUT_SECONDS:.0f} s, nothing reset", took)
