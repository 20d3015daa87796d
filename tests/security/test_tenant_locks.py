"""Locks a tenant can hold, and what they can hold up: only the tenant itself, and briefly.

The operator serialises its work with rows of the control schema's
``locks`` table, which tenants cannot touch; advisory keys (the old code's
``(0x7E4A, hashtext(uid))`` and ``0x7E4A7DB0``, or any key seen in
``pg_locks``) mean nothing to it. A tenant locking its own table holds up
its own Migration only: the Migration waits at most its ``lockTimeout``,
is reported retrying with the database's reason, and completes once the
lock is gone; other tenants go on meanwhile.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.e2e.support import eventually
from tests.security import attacking
from tests.security.conftest import Boundary

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

OLD_CLASS = 0x7E4A
OLD_BOOTSTRAP = 0x7E4A7DB0


def test_advisory_locks_held_by_a_tenant_block_no_other_tenant(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    atk, vic, b = boundary.current("atk"), boundary.tenant("vic"), boundary.b
    with atk.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (OLD_CLASS, vic.uid))
        conn.execute("SELECT pg_advisory_lock(%s)", (OLD_BOOTSTRAP,))
        seen = conn.execute(
            "SELECT classid::int, objid::int FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
        for classid, objid in seen:
            conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (classid, objid))
        held = admin.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.usename = %s",
            (atk.status["role"],),
        ).fetchone()
        assert held is not None and held[0] >= 2  # the locks really are held
        # provisioned
        name = f"vic-{uuid.uuid4().hex[:4]}"
        b.kubectl.apply(
            f"apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n"
            f"  labels:\n    boundary: {name}\nspec:\n  isolation: schema\n"
            "  deletionPolicy: Delete\n"
        )
        b.kubectl.wait(f"tenant/{name}", "condition=Ready", timeout=90)
        # rotated
        value = uuid.uuid4().hex[:8]
        b.kubectl.run("annotate", "tenant", "vic", f"tenantdb.io/rotate-credentials={value}")
        b.kubectl.wait(
            "tenant/vic", f"jsonpath={{.status.credentialsRotation}}={value}", timeout=90
        )
        # migrated
        status = attacking.migration(
            b, "beside-locks", next(boundary.versions), "CREATE TABLE beside (id int)", "vic"
        )
        assert status["phase"] == "Succeeded", status
        # verified: drift made by hand is repaired and reported while the locks are held
        before = {e["metadata"]["name"] for e in b.kubectl.events("vic")}
        admin.execute(f"ALTER ROLE \"{vic.status['role']}\" SET work_mem = '5MB'")
        eventually(
            lambda: any(
                e["reason"] == "IsolationDrift" and e["metadata"]["name"] not in before
                for e in b.kubectl.events("vic")
            ),
            timeout=90,
        )
        still = admin.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.usename = %s",
            (atk.status["role"],),
        ).fetchone()
        assert still == held
    b.kubectl.run("delete", "tenant", name, "--wait=false")


def _held_up(boundary: Boundary, name: str) -> tuple[dict[str, object], int]:
    version = next(boundary.versions)
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "up": f"ALTER TABLE notes ADD COLUMN {name.replace('-', '_')} int",
            "lockTimeout": "6s",
            "tenantSelector": {"matchLabels": {"boundary": "atk"}},
        },
    }
    return body, version


def _retrying(admin: psycopg.Connection, uid: str, version: int) -> bool:
    """The ledger says the tenant is retrying after its lock wait ran out."""
    row = admin.execute(
        "SELECT state, error FROM tenantdb.migration_ledger WHERE tenant_uid = %s AND version = %s",
        (uid, version),
    ).fetchone()
    return row is not None and row[0] == "retry" and "lock timeout" in str(row[1])


def test_a_tenant_locking_its_own_table_holds_up_only_itself_and_completes(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    atk, a, b = boundary.current("atk"), boundary.a, boundary.b
    body, version = _held_up(boundary, "held-up")
    holder = atk.connect()
    try:
        holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")  # the app, in a transaction
        a.kubectl.apply(json.dumps(body))
        eventually(lambda: _retrying(admin, atk.uid, version), timeout=30)
        assert a.kubectl.get("migration", "held-up")["status"]["phase"] == "Running"
        other = attacking.migration(
            b, "beside-held", next(boundary.versions), "CREATE TABLE unhindered (id int)", "vic"
        )
        assert other["phase"] == "Succeeded", other
    finally:
        holder.rollback()
        holder.close()
    done = attacking.wait_verdict(a, "held-up")
    a.kubectl.run("delete", "migration", "held-up", "--wait=true")
    assert done["phase"] == "Succeeded", done
    column = admin.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s"
        " AND table_name = 'notes' AND column_name = 'held_up'",
        (atk.status["schema"],),
    ).fetchone()
    assert column == (1,)


def test_a_busy_tenant_is_reported_with_its_reason_in_status(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    atk, a = boundary.current("atk"), boundary.a
    body, version = _held_up(boundary, "held-again")
    holder = atk.connect()
    try:
        holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        a.kubectl.apply(json.dumps(body))
        eventually(lambda: _retrying(admin, atk.uid, version), timeout=30)

        def listed() -> list[dict[str, str]]:
            found = a.kubectl.get("migration", "held-again").get("status") or {}
            return list(found.get("retrying") or [])

        eventually(lambda: bool(listed()), timeout=30)
        status = a.kubectl.get("migration", "held-again")["status"]
        shown = json.dumps(status["retrying"])
    finally:
        holder.rollback()
        holder.close()
        attacking.wait_verdict(a, "held-again")
        a.kubectl.run("delete", "migration", "held-again", "--wait=true")
    assert "atk" in shown and "lock timeout" in shown, status
