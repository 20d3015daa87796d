"""Backups of one tenant through the API server: take, restore into a new tenant, compare.

Every test writes data through the tenant's own Secret, backs it up with a
``Backup`` object, restores it with ``Tenant.spec.restoreFrom`` and compares
the two tenants table by table, as the application would see them.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import psycopg
import pytest
import yaml

from tenantdb.core import naming
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect, create_as_owner, eventually, tenant
from tests.e2e.test_migrations_rollout import migration, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]


def backup(name: str, tenant_name: str, **spec: object) -> str:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"tenant": tenant_name, **spec},
    }
    return yaml.safe_dump(body)


def restored_tenant(name: str, source: str, isolation: str = "schema") -> str:
    return tenant(name, isolation=isolation, restoreFrom=f"\n    backup: {source}")


def wait_backup(kubectl: Kubectl, name: str, phase: str = "Completed") -> dict[str, object]:
    kubectl.wait(f"backup/{name}", f"jsonpath={{.status.phase}}={phase}", timeout=120)
    status: dict[str, object] = kubectl.get("backup", name)["status"]
    return status


def rows(conn: psycopg.Connection, table: str) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def _orders(kubectl: Kubectl, admin: psycopg.Connection, name: str) -> dict[str, str]:
    """A schema tenant with two related tables and a sequence, filled through its login."""
    kubectl.apply(tenant(name))
    kubectl.wait(f"tenant/{name}", "condition=Ready")
    status = kubectl.get("tenant", name)["status"]
    create_as_owner(
        admin,
        status,
        "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);"
        "CREATE TABLE orders (id bigserial PRIMARY KEY,"
        " customer_id bigint NOT NULL REFERENCES customers, total numeric(10,2), note text)",
    )
    creds = kubectl.secret_data(status["credentialsSecret"])
    with connect(creds) as conn:
        for i in range(50):
            conn.execute("INSERT INTO customers (email) VALUES (%s)", (f"c{i}@example.com",))
        conn.execute(
            "INSERT INTO orders (customer_id, total, note) SELECT id, id * 1.5,"
            " E'line one\\nline two\\t\\\\ tab' FROM customers"
        )
    return creds


def test_schema_tenant_is_backed_up_and_restored_into_a_new_tenant(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    source = _orders(kubectl, admin, "shop")
    kubectl.apply(backup("shop-1", "shop", verify=True))
    status = wait_backup(kubectl, "shop-1")
    assert status["tables"] == 2 and status["rows"] == 100
    assert len(str(status["sha256"])) == 64 and int(str(status["sizeBytes"])) > 0
    assert str(status["location"]).endswith("/")
    assert {"BackingUp", "BackupCompleted"} <= {e["reason"] for e in kubectl.events("shop-1")}
    assert "Completed" in kubectl.run("get", "backups").stdout
    kubectl.wait("backup/shop-1", "jsonpath={.status.lastVerified.passed}=true")
    kubectl.run("annotate", "backup", "shop-1", "tenantdb.io/verify=again")
    kubectl.wait("backup/shop-1", "jsonpath={.status.verifyRequest}=again")

    def verified_twice() -> bool:
        events = kubectl.events("shop-1")
        return sum(1 for e in events if e["reason"] == "BackupVerified") >= 2

    eventually(verified_twice)

    kubectl.apply(restored_tenant("shop-copy", "shop-1"))
    kubectl.wait("tenant/shop-copy", "condition=Ready", timeout=120)
    copy_status = kubectl.get("tenant", "shop-copy")["status"]
    assert copy_status["restored"]["backup"] == "shop-1"
    restored = kubectl.secret_data(copy_status["credentialsSecret"])
    assert restored["password"] != source["password"]
    with connect(source) as old, connect(restored) as new:
        for table in ("customers", "orders"):
            assert rows(new, table) == rows(old, table)
        # the sequences went along: the next id continues after the restored ones
        new.execute("INSERT INTO customers (email) VALUES ('next@example.com')")
        assert new.execute("SELECT max(id) FROM customers").fetchone() == (51,)
        assert old.execute("SELECT count(*) FROM customers").fetchone() == (50,)


def test_a_tampered_archive_is_refused_before_anything_is_restored(
    kubectl: Kubectl, admin: psycopg.Connection, backup_root: Path
) -> None:
    _orders(kubectl, admin, "bent")
    kubectl.apply(backup("bent-1", "bent", compression="none"))
    status = wait_backup(kubectl, "bent-1")
    location = str(status["location"])
    data = Path(location) / "data"
    assert backup_root in data.parents
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    kubectl.apply(restored_tenant("bent-copy", "bent-1"))
    eventually(lambda: _ready_reason(kubectl, "bent-copy") == "ArchiveCorrupt", timeout=60)
    schema = kubectl.get("tenant", "bent-copy")["status"]["schema"]
    assert admin.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
    ).fetchone() == (0,)


def test_a_backup_of_a_missing_tenant_fails_and_says_why(kubectl: Kubectl) -> None:
    kubectl.apply(backup("ghost-1", "ghost"))
    status = wait_backup(kubectl, "ghost-1", "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[union-attr]
    assert ready["reason"] == "TenantNotFound"
    assert "ghost" in ready["message"]
    assert "sha256" not in status


def test_unwritable_storage_fails_and_leaves_nothing_complete(
    kubectl: Kubectl, admin: psycopg.Connection, backup_root: Path
) -> None:
    _orders(kubectl, admin, "stuck")
    blocked = backup_root / "read-only"
    blocked.mkdir(mode=0o500)
    blocked.chmod(0o500)
    if os.geteuid() == 0:  # root writes through modes: a file where a directory must be
        blocked.rmdir()
        blocked.write_text("not a directory")
    kubectl.apply(backup("stuck-1", "stuck", storage={"volume": {"path": str(blocked)}}))
    status = wait_backup(kubectl, "stuck-1", "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[union-attr]
    assert ready["reason"] == "StorageDenied", ready
    assert "completedAt" not in status


def test_a_volume_outside_the_allowed_directories_is_refused(
    kubectl: Kubectl, admin: psycopg.Connection, tmp_path: Path
) -> None:
    _orders(kubectl, admin, "escape")
    kubectl.apply(backup("escape-1", "escape", storage={"volume": {"path": str(tmp_path)}}))
    status = wait_backup(kubectl, "escape-1", "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[union-attr]
    assert ready["reason"] == "InvalidSpec" and "not under an allowed" in ready["message"]
    assert not list(tmp_path.iterdir())  # nothing was written there


def test_encrypted_backup_restores_and_dies_with_its_tenant_key(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    source = _orders(kubectl, admin, "vault")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    kubectl.run("create", "secret", "generic", "backup-master", f"--from-literal=key={key}")
    encryption = {"keySecret": {"name": "backup-master", "key": "key"}}
    kubectl.apply(backup("vault-1", "vault", encryption=encryption))
    wait_backup(kubectl, "vault-1")
    kubectl.apply(restored_tenant("vault-copy", "vault-1"))
    kubectl.wait("tenant/vault-copy", "condition=Ready", timeout=120)
    copy = kubectl.secret_data(kubectl.get("tenant", "vault-copy")["status"]["credentialsSecret"])
    with connect(source) as old, connect(copy) as new:
        assert rows(new, "orders") == rows(old, "orders")

    uid = kubectl.get("tenant", "vault")["metadata"]["uid"]
    keys = kubectl.run("get", "secrets", "-l", "tenantdb.io/tenant=vault", "-o", "name").stdout
    assert keys.strip(), "the tenant's backup key Secret exists"
    kubectl.run("delete", *keys.split())  # off-boarding: the tenant's key is shredded
    kubectl.apply(restored_tenant("vault-late", "vault-1"))
    eventually(lambda: _ready_reason(kubectl, "vault-late") == "EncryptionKeyMissing", timeout=60)
    late = kubectl.get("tenant", "vault-late")["status"]
    assert "restored" not in late and late["phase"] == "Failed"
    assert naming.uid_hash(uid) in _ready_message(kubectl, "vault-late")


def _ready_message(kubectl: Kubectl, name: str) -> str:
    status = kubectl.get("tenant", name).get("status") or {}
    return str(next(c for c in status["conditions"] if c["type"] == "Ready")["message"])


def _ready_reason(kubectl: Kubectl, name: str) -> str | None:
    status = kubectl.get("tenant", name).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    return ready[0]["reason"] if ready else None


def test_shared_tenant_export_holds_only_its_rows_and_is_rekeyed_on_restore(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    up = (
        "CREATE TABLE notes (tenant_id uuid NOT NULL DEFAULT current_tenant_id(),"
        " id bigint GENERATED ALWAYS AS IDENTITY, body text,"
        " PRIMARY KEY (tenant_id, id))"
    )
    kubectl.apply(migration("notes", 1, up, scope="shared"))
    wait_phase(kubectl, "notes", "Succeeded")
    for name in ("alpha", "beta"):
        kubectl.apply(tenant(name, isolation="shared"))
        kubectl.wait(f"tenant/{name}", "condition=Ready")
    alpha = kubectl.secret_data(kubectl.get("tenant", "alpha")["status"]["credentialsSecret"])
    beta = kubectl.secret_data(kubectl.get("tenant", "beta")["status"]["credentialsSecret"])
    with connect(alpha) as conn:
        conn.execute("INSERT INTO notes (body) SELECT 'alpha ' || g FROM generate_series(1, 30) g")
    with connect(beta) as conn:
        conn.execute("INSERT INTO notes (body) SELECT 'beta ' || g FROM generate_series(1, 7) g")

    kubectl.apply(backup("alpha-1", "alpha"))
    status = wait_backup(kubectl, "alpha-1")
    assert status["rows"] == 30, status  # beta's seven rows are not in it
    kubectl.apply(restored_tenant("alpha-copy", "alpha-1", isolation="shared"))
    kubectl.wait("tenant/alpha-copy", "condition=Ready", timeout=120)
    copy_status = kubectl.get("tenant", "alpha-copy")["status"]
    copy = kubectl.secret_data(copy_status["credentialsSecret"])
    with connect(alpha) as old, connect(copy) as new:
        assert (
            new.execute("SELECT body FROM notes ORDER BY body").fetchall()
            == old.execute("SELECT body FROM notes ORDER BY body").fetchall()
        )
        tenant_ids = new.execute("SELECT DISTINCT tenant_id::text FROM notes").fetchall()
        assert tenant_ids == [(copy_status["tenantId"],)]
    schema = admin.execute(
        "SELECT schema_name FROM tenantdb.tenants WHERE uid = %s", (copy_status["tenantId"],)
    ).fetchone()
    assert schema is not None
    counts = admin.execute(
        f'SELECT tenant_id::text, count(*) FROM "{schema[0]}".notes GROUP BY 1'
    ).fetchall()
    assert sorted(n for _, n in counts) == [7, 30, 30]  # beta untouched, alpha kept, copy new


def test_database_tenant_round_trip(kubectl: Kubectl, database_url: str) -> None:
    kubectl.apply(tenant("dbt", isolation="database"))
    kubectl.wait("tenant/dbt", "condition=Ready")
    status = kubectl.get("tenant", "dbt")["status"]
    creds = kubectl.secret_data(status["credentialsSecret"])
    in_tenant = psycopg.conninfo.make_conninfo(database_url, dbname=status["database"])
    with psycopg.connect(in_tenant, autocommit=True) as owner_conn:
        create_as_owner(
            owner_conn,
            {**status, "schema": "public"},
            "CREATE TABLE items (id serial PRIMARY KEY, name text)",
        )
    with connect(creds) as conn:
        conn.execute("INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 20) g")
    kubectl.apply(backup("dbt-1", "dbt", compression="gzip"))
    assert wait_backup(kubectl, "dbt-1")["rows"] == 20
    kubectl.apply(restored_tenant("dbt-copy", "dbt-1", isolation="database"))
    kubectl.wait("tenant/dbt-copy", "condition=Ready", timeout=120)
    copy = kubectl.secret_data(kubectl.get("tenant", "dbt-copy")["status"]["credentialsSecret"])
    with connect(creds) as old, connect(copy) as new:
        assert rows(new, "items") == rows(old, "items")
        new.execute("INSERT INTO items (name) VALUES ('next')")
        assert new.execute("SELECT max(id) FROM items").fetchone() == (21,)


def test_schedule_creates_backups_and_keeps_the_newest(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    _orders(kubectl, admin, "daily")
    schedule = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": "daily"},
        "spec": {
            "tenant": "daily",
            "schedule": "*/3 * * * * *",
            "immediate": True,
            "retention": {"keep": 2},
        },
    }
    kubectl.apply(yaml.safe_dump(schedule))

    def made() -> list[dict[str, object]]:
        listed = kubectl.run("get", "backups", "-l", "tenantdb.io/schedule=daily", "-o", "json")
        return list(yaml.safe_load(listed.stdout)["items"])

    seen: set[str] = set()

    def enough() -> bool:
        seen.update(b["metadata"]["name"] for b in made())  # type: ignore[index]
        return len(seen) >= 4

    eventually(enough, timeout=90)
    first = sorted(seen)[:2]  # named after their run's time: the oldest runs

    def kept() -> list[dict[str, object]]:
        """The Backups retention keeps: a deleted one shows until its archive is gone."""
        return [b for b in made() if not b["metadata"].get("deletionTimestamp")]  # type: ignore[attr-defined]

    # The oldest go; at most `keep` Completed ones stay (retention follows each
    # completion within a moment, so the count is sampled until it holds).
    eventually(lambda: not {b["metadata"]["name"] for b in kept()} & set(first), timeout=60)  # type: ignore[index]
    eventually(
        lambda: (
            sum(1 for b in kept() if (b.get("status") or {}).get("phase") == "Completed")  # type: ignore[union-attr]
            <= 2
        ),
        timeout=30,
    )
    status = kubectl.get("backupschedule", "daily")["status"]
    assert status["phase"] == "Active" and status["lastBackup"].startswith("daily-")
    assert status["nextScheduleTime"] >= status["lastScheduleTime"]
    kubectl.run(
        "patch", "backupschedule", "daily", "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    kubectl.wait("backupschedule/daily", "jsonpath={.status.phase}=Suspended")


def test_backup_then_delete_takes_a_final_backup_before_dropping(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    _orders(kubectl, admin, "leaving")
    kubectl.run(
        "patch",
        "tenant",
        "leaving",
        "--type=merge",
        "-p",
        '{"spec":{"deletionPolicy":"BackupThenDelete"}}',
    )
    schema = kubectl.get("tenant", "leaving")["status"]["schema"]
    kubectl.run("delete", "tenant", "leaving", "--wait=false")
    kubectl.wait("tenant/leaving", "delete", timeout=120)
    finals = kubectl.run("get", "backups", "-l", "tenantdb.io/tenant=leaving", "-o", "json")
    items = yaml.safe_load(finals.stdout)["items"]
    assert [b["status"]["phase"] for b in items] == ["Completed"]
    assert items[0]["status"]["rows"] == 100
    assert admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
    ).fetchone() == (0,)
    kubectl.apply(restored_tenant("returned", items[0]["metadata"]["name"]))
    kubectl.wait("tenant/returned", "condition=Ready", timeout=120)


def test_later_migrations_are_applied_on_top_of_a_restore(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    _orders(kubectl, admin, "grow")
    kubectl.apply(backup("grow-1", "grow"))
    assert "schemaVersion" not in wait_backup(kubectl, "grow-1")  # no migration yet
    up = "ALTER TABLE customers ADD COLUMN vip boolean NOT NULL DEFAULT false"
    kubectl.apply(migration("vip", 1, up))
    wait_phase(kubectl, "vip", "Succeeded")
    kubectl.apply(restored_tenant("grow-copy", "grow-1"))
    kubectl.wait("tenant/grow-copy", "condition=Ready", timeout=120)
    status = kubectl.get("tenant", "grow-copy")["status"]
    assert status["version"] == 1  # the archive had no migration; version 1 came after
    creds = kubectl.secret_data(status["credentialsSecret"])
    with connect(creds) as conn:
        assert conn.execute("SELECT count(*) FILTER (WHERE NOT vip) FROM customers").fetchone() == (
            50,
        )


def test_a_failed_final_backup_keeps_the_data_until_one_succeeds(
    kubectl: Kubectl, admin: psycopg.Connection, database_url: str
) -> None:
    _orders(kubectl, admin, "held")
    kubectl.run(
        "patch", "tenant", "held", "--type=merge", "-p",
        '{"spec":{"deletionPolicy":"BackupThenDelete"}}',
    )  # fmt: skip
    schema = kubectl.get("tenant", "held")["status"]["schema"]
    with psycopg.connect(database_url) as locker:  # the tenant's table is held: no dump
        locker.execute(f'LOCK TABLE "{schema}".orders IN ACCESS EXCLUSIVE MODE')
        kubectl.run("delete", "tenant", "held", "--wait=false")
        eventually(lambda: _ready_reason(kubectl, "held") == "BackupFailed", timeout=90)
        assert "nothing deleted" in _ready_message(kubectl, "held")
        assert any(e["reason"] == "BackupFailed" for e in kubectl.events("held"))
        assert admin.execute(f'SELECT count(*) FROM "{schema}".customers').fetchone() == (
            50,
        )  # the data is all there
        locker.rollback()
    kubectl.wait("tenant/held", "delete", timeout=120)
    finals = kubectl.run("get", "backups", "-l", "tenantdb.io/tenant=held", "-o", "json")
    phases = [b["status"]["phase"] for b in yaml.safe_load(finals.stdout)["items"]]
    assert phases == ["Completed"]  # the failed one was replaced, not kept
    assert admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
    ).fetchone() == (0,)
