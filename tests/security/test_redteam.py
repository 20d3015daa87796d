"""Further attacks by a namespace user and a tenant application: role defaults set on
the owner role (and outliving their repair in cached sessions), a temporary marker
table planted before the marker write, session-level locks and listeners left on a
cached session, a trigger changing role inside a seeder, a tenant's open snapshot
during another tenant's ``CREATE INDEX CONCURRENTLY``, and a tenant's own table lock
during its deletion and its isolation check.

What each must show: whatever a Migration does to its owner role reaches its own
tenant only, the ledger says a version is applied exactly when the tenant's marker
table does, and every wait the operator makes ends and is reported.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tenantdb.core.migrations import scripts
from tests.e2e.support import eventually
from tests.security import attacking
from tests.security.conftest import Boundary, Tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

RECORD = (
    "INSERT INTO whoami (label, session_role, current_role_name)"
    " VALUES ('{label}', session_user, current_user)"
)


def _ledger_and_marker(admin: psycopg.Connection, tenant: Tenant, version: int) -> tuple[Any, Any]:
    ledger = admin.execute(
        "SELECT state FROM tenantdb.migration_ledger WHERE tenant_uid = %s AND version = %s",
        (tenant.uid, version),
    ).fetchone()
    marker = admin.execute(
        f'SELECT count(*) FROM "{tenant.status["schema"]}".tenantdb_migrations WHERE version = %s',
        (version,),
    ).fetchone()
    return (ledger[0] if ledger else None), (marker[0] if marker else 0)


def _fresh_owner_sessions(admin: psycopg.Connection, owner: str) -> None:
    """End the owner's cached sessions, as their idle time would: the next one is new and
    starts with the role's defaults (``DISCARD ALL`` keeps a session's start-up values)."""
    query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"
    admin.execute(query, (owner,))
    left = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
    eventually(lambda: admin.execute(left, (owner,)).fetchone() == (0,), timeout=30)


@pytest.mark.parametrize(
    "setting",
    [
        "role = {login}",
        "default_transaction_read_only = on",
        "lock_timeout = 1",
        "search_path = pg_temp, public",
    ],
    ids=["role", "read-only", "lock-timeout", "search-path"],
)
def test_owner_role_defaults_set_by_a_migration_reach_only_its_own_tenant(
    boundary: Boundary, admin: psycopg.Connection, setting: str
) -> None:
    atk, vic = boundary.current("atk"), boundary.tenant("vic")
    owner, login = atk.status["ownerRole"], atk.status["role"]
    name = setting.split(" ", maxsplit=1)[0]
    statement = setting.format(login=f'"{login}"')
    pinned = _role_config(admin, owner)
    try:
        poison = attacking.migration(
            boundary.a,
            "owner-default",
            next(boundary.versions),
            f"ALTER ROLE CURRENT_USER SET {statement}",
            "atk",
        )
        assert poison["phase"] == "Succeeded", poison
        _fresh_owner_sessions(admin, owner)
        version = next(boundary.versions)
        label = f"after-{name}"
        own = attacking.migration(
            boundary.a, "after-default", version, RECORD.format(label=label), "atk"
        )
        assert own["phase"] in attacking.TERMINAL, own
        state, marked = _ledger_and_marker(admin, atk, version)
        assert (state == "applied") == (marked == 1), (state, marked, own)
        if name == "search_path":  # the operator sets the tenant's own path: nothing else
            assert state == "applied" and attacking.whoami(admin, atk, label), own
        for row in attacking.whoami(admin, atk, label):
            assert row[1] == owner and row[2] in (owner, login), row
        other = attacking.migration(
            boundary.b,
            f"beside-{name.replace('_', '-')}",
            next(boundary.versions),
            RECORD.format(label=f"vic-{name}"),
            "vic",
        )
        assert other["phase"] == "Succeeded", other
        assert [r[1:3] for r in attacking.whoami(admin, vic, f"vic-{name}")] == [
            (vic.status["ownerRole"], vic.status["ownerRole"])
        ]
    finally:
        if name == "search_path":  # pinned by provisioning: the isolation check restores it
            eventually(lambda: _role_config(admin, owner) == pinned, timeout=90)
        else:
            admin.execute(f'ALTER ROLE "{owner}" RESET {name}')
        _fresh_owner_sessions(admin, owner)


def _role_config(admin: psycopg.Connection, role: str) -> Any:
    row = admin.execute(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
        " WHERE r.rolname = %s AND s.setdatabase = 0",
        (role,),
    ).fetchone()
    return row[0] if row else None


def test_cached_owner_sessions_do_not_outlive_a_repaired_role_setting(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """A session starts with its role's defaults and ``DISCARD ALL`` goes back to those
    start-up values, not to the role's current ones: once the isolation check has
    removed a setting a Migration put on its owner role, no cached session may still
    carry it (the tenant would stay read-only for as long as its sessions are reused)."""
    atk, a = boundary.current("atk"), boundary.a
    owner = atk.status["ownerRole"]
    try:
        poison = attacking.migration(
            a,
            "read-only-owner",
            next(boundary.versions),
            "ALTER ROLE CURRENT_USER SET default_transaction_read_only = on",
            "atk",
        )
        assert poison["phase"] == "Succeeded", poison
        _fresh_owner_sessions(admin, owner)
        stuck = attacking.migration(
            a, "while-read-only", next(boundary.versions), "CREATE TABLE ro_1 (id int)", "atk"
        )
        assert "read-only transaction" in attacking.failure(stuck, "atk")  # really poisoned
        setting = (
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname = %s AND s.setconfig::text LIKE '%%default_transaction_read_only%%'"
        )
        eventually(lambda: admin.execute(setting, (owner,)).fetchone() == (0,), timeout=90)
        repaired = attacking.migration(
            a, "after-repair", next(boundary.versions), "CREATE TABLE ro_2 (id int)", "atk"
        )
        assert repaired["phase"] == "Succeeded", repaired
    finally:
        admin.execute(f'ALTER ROLE "{owner}" RESET default_transaction_read_only')
        _fresh_owner_sessions(admin, owner)


TEMP_MARKERS = """CREATE OR REPLACE FUNCTION marker_trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO tripwire (name) VALUES ('temp ' || TG_TABLE_NAME); RETURN NEW; END $$;
CREATE TEMP TABLE tenantdb_migrations (version bigint, checksum text, applied_at timestamptz);
CREATE TEMP TABLE migration_ledger (version bigint);
CREATE TRIGGER trap BEFORE INSERT ON pg_temp.tenantdb_migrations
  FOR EACH ROW EXECUTE FUNCTION marker_trap();
CREATE TRIGGER trap BEFORE INSERT ON pg_temp.migration_ledger
  FOR EACH ROW EXECUTE FUNCTION marker_trap();
SELECT set_config('search_path', 'pg_temp, ' || current_schema(), true);
CREATE TABLE after_temp_markers (id int)"""


@pytest.mark.parametrize("transactional", [True, False], ids=["transaction", "statements"])
def test_a_temporary_marker_table_never_takes_the_marker_write(
    boundary: Boundary, admin: psycopg.Connection, transactional: bool
) -> None:
    atk = boundary.current("atk")
    version = next(boundary.versions)
    up = TEMP_MARKERS.replace("after_temp_markers", f"after_temp_markers_{int(transactional)}")
    if not transactional:
        up = up.replace(", true)", ", false)")
    status = attacking.migration(
        boundary.a, "temp-markers", version, up, "atk", transactional=transactional
    )
    assert status["phase"] == "Succeeded", status
    assert _ledger_and_marker(admin, atk, version) == ("applied", 1)
    assert not [t for t in attacking.tripwire(admin, atk) if t.startswith("temp ")]


def test_a_migration_that_erases_its_own_marker_is_still_recorded_once(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """The marker row is written before the user's SQL, in the same transaction, so the
    SQL can delete it or rewrite its checksum. That is the tenant's own bookkeeping: the
    change commits once, as the owner; the ledger records it applied; a later version
    applies and this one never runs again (its CREATE TABLE would fail)."""
    atk = boundary.current("atk")
    version = next(boundary.versions)
    up = (
        f"CREATE TABLE erased_marker_{version} (id int);\n"
        f"UPDATE tenantdb_migrations SET checksum = 'forged' WHERE version = {version};\n"
        f"DELETE FROM tenantdb_migrations WHERE version = {version};\n"
        f"INSERT INTO erased_marker_{version} SELECT 1 WHERE session_user = current_user"
    )
    status = attacking.migration(boundary.a, "erased-marker", version, up, "atk")
    assert status["phase"] == "Succeeded", status
    assert _ledger_and_marker(admin, atk, version) == ("applied", 0)
    schema = atk.status["schema"]
    rows = admin.execute(f'SELECT count(*) FROM "{schema}".erased_marker_{version}').fetchone()
    assert rows == (1,)  # ran once, as the owner it logged in as
    later = next(boundary.versions)
    after = attacking.migration(
        boundary.a, "after-erased", later, f"CREATE TABLE after_erased_{later} (id int)", "atk"
    )
    assert after["phase"] == "Succeeded", after
    attempts = admin.execute(
        "SELECT attempts FROM tenantdb.migration_ledger WHERE tenant_uid = %s AND version = %s",
        (atk.uid, version),
    ).fetchone()
    assert attempts == (1,)


def test_an_open_snapshot_of_a_tenant_holds_up_another_tenants_concurrent_index_boundedly(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """``CREATE INDEX CONCURRENTLY`` waits for every older snapshot in the database,
    any tenant's: the wait must end at the Migration's ``lockTimeout``, be reported
    retrying, and the index be built once the snapshot is gone."""
    atk, vic, b = boundary.current("atk"), boundary.tenant("vic"), boundary.b
    version = next(boundary.versions)
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "concurrent-held"},
        "spec": {
            "version": version,
            "up": "CREATE INDEX CONCURRENTLY notes_body_held ON notes (body)",
            "transactional": False,
            "lockTimeout": "2s",
            "statementTimeout": "10min",
            "tenantSelector": {"matchLabels": {"boundary": "vic"}},
        },
    }

    def retrying() -> bool:
        row = admin.execute(
            "SELECT state FROM tenantdb.migration_ledger WHERE tenant_uid = %s AND version = %s",
            (vic.uid, version),
        ).fetchone()
        return row is not None and row[0] == "retry"

    holder = atk.connect()
    try:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM notes")  # the snapshot, held open
        b.kubectl.apply(json.dumps(body))
        eventually(retrying, timeout=60)
    finally:
        holder.rollback()
        holder.close()
    done = attacking.wait_verdict(b, "concurrent-held")
    b.kubectl.run("delete", "migration", "concurrent-held", "--wait=true", "--timeout=60s")
    assert done["phase"] == "Succeeded", done
    valid = admin.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'notes_body_held'",
        (vic.status["schema"],),
    ).fetchall()
    assert valid == [(True,)]


SESSION_LEFTOVERS = """SELECT pg_advisory_lock(7340);
SELECT pg_advisory_lock_shared(7341);
LISTEN tenantdb_leftover;
SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;
SET SESSION idle_in_transaction_session_timeout = 1"""


def test_session_locks_listeners_and_characteristics_left_by_a_migration_are_discarded(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """What ``DISCARD ALL`` must clear beyond settings and temporary objects: session-level
    advisory locks, ``LISTEN`` registrations, ``SET SESSION CHARACTERISTICS``."""
    atk, owner = boundary.current("atk"), boundary.current("atk").status["ownerRole"]
    left = attacking.migration(
        boundary.a,
        "leave-locks",
        next(boundary.versions),
        SESSION_LEFTOVERS,
        "atk",
        transactional=False,
    )
    assert left["phase"] == "Succeeded", left
    held = (
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND a.usename = %s"
    )
    assert admin.execute(held, (owner,)).fetchone() == (0,)
    status = attacking.migration(
        boundary.a,
        "after-locks",
        next(boundary.versions),
        "CREATE TABLE after_leftovers AS SELECT current_setting('transaction_read_only') AS ro,"
        " (SELECT count(*) FROM pg_listening_channels()) AS channels,"
        " pg_try_advisory_lock(7340) AS free",
        "atk",
    )
    assert status["phase"] == "Succeeded", status
    seen = admin.execute(f'SELECT * FROM "{atk.status["schema"]}".after_leftovers').fetchone()
    assert seen == ("off", 0, True)


SEED_TRAP = """CREATE TABLE plans (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    key text NOT NULL UNIQUE, name text NOT NULL, monthly_price_cents integer NOT NULL,
    seats integer NOT NULL, email_accounts integer NOT NULL, daily_send_limit integer NOT NULL);
CREATE TABLE seen_roles (label text NOT NULL, session_role text NOT NULL,
    current_role_name text NOT NULL, error text);
CREATE FUNCTION seed_trap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE attempt text; entered text := current_user;
BEGIN
  INSERT INTO seen_roles VALUES ('entered', session_user, current_user, NULL);
  FOREACH attempt IN ARRAY ARRAY[
      'RESET ROLE', 'SET ROLE NONE', 'SELECT set_config(''role'', ''none'', false)',
      'SET SESSION AUTHORIZATION DEFAULT', 'SET ROLE postgres', 'SET ROLE tenantdb_operator',
      'SELECT set_config(''role'', ''tenantdb_operator'', true)',
      'SET SESSION AUTHORIZATION tenantdb_operator']
  LOOP
    BEGIN
      EXECUTE attempt;
      INSERT INTO seen_roles VALUES (attempt, session_user, current_user, NULL);
    EXCEPTION WHEN OTHERS THEN
      INSERT INTO seen_roles VALUES (attempt, session_user, current_user, SQLERRM);
    END;
  END LOOP;
  EXECUTE format('SET LOCAL ROLE %I', entered);  -- so that the seeder commits what it saw
  RETURN NEW;
END $$;
CREATE TRIGGER seed_trap BEFORE INSERT OR UPDATE ON plans
  FOR EACH ROW EXECUTE FUNCTION seed_trap()"""


def test_a_trigger_on_a_seeded_table_changes_role_to_at_most_the_owner(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """Seeders run as the owner narrowed to the login role by ``SET LOCAL ROLE``: a trigger
    the namespace user planted on a table they write may undo that narrowing (back to the
    session user, the owner), never go further. (It narrows again at the end, so that the
    seeder commits the rows it recorded.)"""
    a = boundary.a
    a.kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: seedtrap\n"
        "  labels:\n    boundary: seedtrap\n"
        "spec:\n  isolation: schema\n  plan: free\n  deletionPolicy: Delete\n"
    )
    try:
        a.kubectl.wait("tenant/seedtrap", "condition=Ready", timeout=120)
        obj = a.kubectl.get("tenant", "seedtrap")
        owner, login, schema = (obj["status"][k] for k in ("ownerRole", "role", "schema"))
        trap = attacking.migration(a, "seed-trap", next(boundary.versions), SEED_TRAP, "seedtrap")
        assert trap["phase"] == "Succeeded", trap
        a.kubectl.run(
            "patch",
            "tenant",
            "seedtrap",
            "--type=merge",
            "-p",
            '{"spec":{"seed":{"profile":"production","seeders":["plans"]}}}',
        )
        seen = f'SELECT label, session_role, current_role_name, error FROM "{schema}".seen_roles'
        eventually(lambda: bool(admin.execute(seen).fetchall()), timeout=90)
        a.kubectl.wait("tenant/seedtrap", "jsonpath={.status.seeded}=true", timeout=90)
        rows = admin.execute(seen).fetchall()
        assert rows[0][:3] == ("entered", owner, login), rows  # the seeder, as the login role
        for label, session_role, current_role, error in rows:
            assert session_role == owner and current_role in (owner, login), rows
            if "postgres" in label or "tenantdb_operator" in label:
                assert error is not None, rows
    finally:
        a.kubectl.run("delete", "tenant", "seedtrap", "--wait=true", "--timeout=120s")


def test_a_tenant_holding_a_lock_on_its_own_table_does_not_stop_its_deletion(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """Deleting (policy Delete) drops the schema, which needs every table's lock: the
    tenant's own sessions are ended first, so an open transaction of its application
    holding ``ACCESS EXCLUSIVE`` on its table cannot keep the deletion waiting."""
    a = boundary.a
    a.kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: lockdel\n"
        "  labels:\n    boundary: lockdel\n"
        "spec:\n  isolation: schema\n  plan: free\n  deletionPolicy: Delete\n"
    )
    a.kubectl.wait("tenant/lockdel", "condition=Ready", timeout=120)
    obj = a.kubectl.get("tenant", "lockdel")
    status = attacking.migration(
        a, "lockdel-table", next(boundary.versions), "CREATE TABLE held (id int)", "lockdel"
    )
    assert status["phase"] == "Succeeded", status
    secret = a.kubectl.secret_data("lockdel-credentials")
    holder = psycopg.connect(secret["uri"], connect_timeout=10)
    try:
        holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        a.kubectl.run("delete", "tenant", "lockdel", "--wait=true", "--timeout=120s")
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")
    finally:
        holder.close()
    left = admin.execute(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = %s),"
        " (SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s))",
        (obj["status"]["schema"], obj["status"]["role"], obj["status"]["ownerRole"]),
    ).fetchone()
    assert left == (0, 0)


def test_a_tenant_holding_a_lock_on_its_own_table_does_not_stop_its_verification(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """The isolation check and its repair read catalogs and alter roles: an open
    transaction of the application holding ``ACCESS EXCLUSIVE`` on its own table holds
    up neither, and the drift is repaired and reported meanwhile."""
    atk, a = boundary.current("atk"), boundary.a
    holder = atk.connect()
    try:
        holder.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        before = {e["metadata"]["name"] for e in a.kubectl.events("atk")}
        admin.execute(f"ALTER ROLE \"{atk.status['role']}\" SET work_mem = '7MB'")
        eventually(
            lambda: any(
                e["reason"] == "IsolationDrift" and e["metadata"]["name"] not in before
                for e in a.kubectl.events("atk")
            ),
            timeout=90,
        )
        settings = admin.execute(
            "SELECT s.setconfig::text FROM pg_db_role_setting s JOIN pg_roles r"
            " ON r.oid = s.setrole WHERE r.rolname = %s AND s.setdatabase = 0",
            (atk.status["role"],),
        ).fetchone()
        assert settings is not None and "work_mem=7MB" not in settings[0]
        still = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND mode = 'AccessExclusiveLock'"
            " AND granted AND relation IS NOT NULL",
            (holder.info.backend_pid,),
        ).fetchone()
        assert still == (1,)
    finally:
        holder.rollback()
        holder.close()


def test_a_marker_written_by_the_tenants_application_is_never_taken_for_a_change(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """A Migration grants the marker table to PUBLIC; the tenant's application (its
    login role) then writes the marker of the next version, checksum and all. The
    operator must not record that version applied without running it."""
    atk = boundary.current("atk")
    opened = attacking.migration(
        boundary.a,
        "open-markers",
        next(boundary.versions),
        "GRANT INSERT, UPDATE, DELETE ON tenantdb_migrations TO PUBLIC",
        "atk",
    )
    assert opened["phase"] == "Succeeded", opened
    version, up = next(boundary.versions), "CREATE TABLE forged_skip (id int)"
    with atk.connect(autocommit=True) as app:
        app.execute(
            "INSERT INTO tenantdb_migrations (version, checksum) VALUES (%s, %s)",
            (version, scripts.checksum(up)),
        )
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "after-forged"},
        "spec": {
            "version": version,
            "up": up,
            "tenantSelector": {"matchLabels": {"boundary": "atk"}},
        },
    }
    a = boundary.a
    a.kubectl.apply(json.dumps(body))
    try:

        def status() -> dict[str, Any]:
            return a.kubectl.get("migration", "after-forged").get("status") or {}

        def settled() -> bool:
            found = status()
            state, _ = _ledger_and_marker(admin, atk, version)
            halted = found.get("phase") == "Halted" and "ChecksumMismatch" in json.dumps(found)
            return state == "applied" or halted

        # reported as drift, and it stays so (ChecksumMismatch); or applied
        eventually(settled, timeout=180, describe=status)
        seen = status()
    finally:
        a.kubectl.run("delete", "migration", "after-forged", "--wait=true", "--timeout=60s")
    state, _ = _ledger_and_marker(admin, atk, version)
    ran = admin.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f'"{atk.status["schema"]}".forged_skip',)
    ).fetchone()
    assert ran == (True,) or state != "applied", (state, seen)
    if state != "applied":
        reasons = [f["error"] for f in seen.get("failures", []) if f.get("tenant") == "atk"]
        assert any("writable by PUBLIC" in r for r in reasons), seen
