"""The migration engine on one tenant at a time, against a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import conninfo

from tenantdb.api import migrations as api
from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, locking, naming, passwords, pools, scoping
from tenantdb.core.migrations import commands as migration_commands
from tenantdb.core.migrations import engine, errors, ledger, markers, rollout, scripts
from tenantdb.settings import DEFAULT_PLANS

pytestmark = pytest.mark.postgres
Outcome = engine.Outcome


def provision(
    server: commands.Server, isolation: Isolation = Isolation.SCHEMA, namespace: str = "engine"
) -> scoping.TenantLocation:
    """A real tenant, provisioned the way the Tenant controller does it."""
    uid = str(uuid.uuid4())
    name = f"t{uuid.uuid4().hex[:10]}"
    request = commands.TenantRequest(
        uid=uid,
        name=name,
        namespace=namespace,
        isolation=isolation,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )
    commands.provision(server, request, passwords.generate(), reset_password=True)
    with server.pool.connection() as conn:
        location = scoping.load(conn, server.control_schema, uid)
    assert location is not None
    return location


def script(version: int, up: str, **fields: object) -> scripts.Script:
    return scripts.Script(version=version, name=f"m{version}", up=up, **fields)  # type: ignore[arg-type]


def row(admin: psycopg.Connection, uid: str, version: int) -> dict[str, object] | None:
    cur = admin.execute(
        "SELECT state, checksum, attempts, duration_ms, applied_by, error, statements_done"
        " FROM tenantdb.migration_ledger WHERE tenant_uid = %s AND version = %s",
        (uid, version),
    )
    found = cur.fetchone()
    if found is None:
        return None
    keys = ("state", "checksum", "attempts", "duration_ms", "applied_by", "error", "done")
    return dict(zip(keys, found, strict=True))


def scalar(conn: psycopg.Connection, query: str, *params: object) -> object:
    found = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert found is not None
    return found[0]


def in_tenant(database_url: str, tenant: scoping.TenantLocation) -> psycopg.Connection:
    """A superuser connection to wherever the tenant's data lives."""
    url = conninfo.make_conninfo(database_url, dbname=tenant.database_name)
    return psycopg.connect(url, autocommit=True)


@pytest.fixture
def ctx(server: commands.Server) -> engine.Context:
    return engine.Context(server=server, applied_by="tests")


@pytest.fixture
def tenant(server: commands.Server) -> scoping.TenantLocation:
    return provision(server)


CREATE_LEADS = "CREATE TABLE leads (id bigint PRIMARY KEY, email text NOT NULL);\nCREATE INDEX leads_email ON leads (email);"


def test_apply_runs_in_the_tenant_schema_as_its_owner_and_records_the_ledger(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    first = script(1, CREATE_LEADS, description="leads")
    result = engine.apply(ctx, tenant, first)
    assert result.outcome is Outcome.APPLIED, result.error
    owner = scalar(
        admin,
        "SELECT tableowner FROM pg_tables WHERE schemaname = %s AND tablename = 'leads'",
        tenant.schema_name,
    )
    assert owner == tenant.owner_role
    recorded = row(admin, tenant.uid, 1)
    assert recorded is not None
    assert recorded["state"] == "applied"
    assert recorded["checksum"] == first.checksum == scripts.checksum(CREATE_LEADS + "\n\n")
    assert recorded["attempts"] == 1
    assert recorded["applied_by"] == "tests"
    assert isinstance(recorded["duration_ms"], int)
    assert recorded["error"] is None


def test_applying_again_changes_nothing(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    first = script(1, "CREATE TABLE once (id int)")
    assert engine.apply(ctx, tenant, first).outcome is Outcome.APPLIED
    assert engine.apply(ctx, tenant, first).outcome is Outcome.ALREADY_APPLIED
    assert row(admin, tenant.uid, 1)["attempts"] == 1  # type: ignore[index]


def test_a_changed_text_is_drift_and_is_never_run(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    assert (
        engine.apply(ctx, tenant, script(1, "CREATE TABLE a (id int)")).outcome is Outcome.APPLIED
    )
    edited = script(1, "CREATE TABLE a (id int);\nCREATE TABLE b (id int)")
    result = engine.apply(ctx, tenant, edited)
    assert result.outcome is Outcome.DRIFT
    assert (
        scalar(
            admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
            tenant.schema_name,
            markers.MARKER_TABLE,
        )
        == 1
    )


def test_a_failing_statement_leaves_nothing_half_applied_and_reports_the_database_error(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    bad = script(1, "CREATE TABLE first (id int);\nSELECT * FROM nowhere;")
    result = engine.apply(ctx, tenant, bad)
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert 'relation "nowhere" does not exist' in result.error
    assert "42P01" in result.error and "at character 44 (line 2, column 15)" in result.error
    assert (
        scalar(
            admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
            tenant.schema_name,
            markers.MARKER_TABLE,
        )
        == 0
    )
    recorded = row(admin, tenant.uid, 1)
    assert recorded is not None
    assert (recorded["state"], recorded["attempts"]) == ("failed", 1)
    assert recorded["error"] == result.error
    fixed = engine.apply(ctx, tenant, script(1, "CREATE TABLE first (id int)"))
    assert fixed.outcome is Outcome.APPLIED
    assert row(admin, tenant.uid, 1)["attempts"] == 2  # type: ignore[index]


def test_a_tenant_cannot_reach_outside_its_scope(
    ctx: engine.Context, server: commands.Server, admin: psycopg.Connection
) -> None:
    red, blue = provision(server), provision(server)
    assert (
        engine.apply(ctx, blue, script(1, "CREATE TABLE secrets (v text)")).outcome
        is Outcome.APPLIED
    )
    sneaky = script(2, f'SELECT * FROM "{blue.schema_name}".secrets')
    result = engine.apply(ctx, red, sneaky)
    assert result.outcome is Outcome.FAILED
    assert "permission denied" in (result.error or "")
    escalate = script(3, "RESET ROLE; DROP SCHEMA tenantdb CASCADE")
    assert escalate.problems()
    assert scalar(admin, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenantdb'") == 1


def test_a_locked_tenant_is_skipped_at_once(
    ctx: engine.Context, tenant: scoping.TenantLocation, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as other, other.transaction():
        locking.take(other, ctx.server.control_schema, tenant.uid)
        busy = engine.apply(ctx, tenant, script(1, "CREATE TABLE t (id int)"))
    assert busy.outcome is Outcome.BUSY
    assert (
        engine.apply(ctx, tenant, script(1, "CREATE TABLE t (id int)")).outcome is Outcome.APPLIED
    )


def test_a_lock_timeout_is_transient_and_retried(
    ctx: engine.Context,
    tenant: scoping.TenantLocation,
    database_url: str,
    admin: psycopg.Connection,
) -> None:
    assert (
        engine.apply(ctx, tenant, script(1, "CREATE TABLE busy (id int)")).outcome
        is Outcome.APPLIED
    )
    alter = script(2, "ALTER TABLE busy ADD COLUMN note text", lock_timeout="100ms")
    with psycopg.connect(database_url) as holder:
        holder.execute(f'LOCK TABLE "{tenant.schema_name}".busy IN ACCESS EXCLUSIVE MODE')
        result = engine.apply(ctx, tenant, alter)
        assert result.outcome is Outcome.RETRY
        assert "55P03" in (result.error or "")
        assert row(admin, tenant.uid, 2)["state"] == "retry"  # type: ignore[index]
    assert engine.apply(ctx, tenant, alter).outcome is Outcome.APPLIED


def test_order_is_enforced_by_the_ledger(
    ctx: engine.Context, tenant: scoping.TenantLocation
) -> None:
    second = script(2, "CREATE TABLE two (id int)")
    blocked = engine.apply(ctx, tenant, second, requires=[1])
    assert blocked.outcome is Outcome.BLOCKED and blocked.waiting_for == (1,)
    assert (
        engine.apply(ctx, tenant, script(1, "CREATE TABLE one (id int)")).outcome is Outcome.APPLIED
    )
    assert engine.apply(ctx, tenant, second, requires=[1]).outcome is Outcome.APPLIED


def test_dry_run_leaves_no_trace(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    ok = engine.apply(ctx, tenant, script(1, "CREATE TABLE dry (id int)"), dry_run=True)
    bad = engine.apply(ctx, tenant, script(1, "CREATE TABLE dry (id nosuchtype)"), dry_run=True)
    assert ok.outcome is Outcome.PASSED
    assert bad.outcome is Outcome.FAILED and 'type "nosuchtype" does not exist' in (bad.error or "")
    assert row(admin, tenant.uid, 1) is None
    assert (
        scalar(
            admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
            tenant.schema_name,
            markers.MARKER_TABLE,
        )
        == 0
    )


def test_non_transactional_runs_statement_by_statement_and_resumes(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    base = script(1, "CREATE TABLE events (id int, kind text);\nCREATE TABLE audit (n int)")
    assert engine.apply(ctx, tenant, base).outcome is Outcome.APPLIED
    schema = tenant.schema_name
    index = script(
        2,
        "INSERT INTO audit VALUES (1);\n"
        "CREATE INDEX CONCURRENTLY events_kind ON events (kind);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY events_id ON events (id);",
        transactional=False,
    )
    admin.execute(f'INSERT INTO "{schema}".events VALUES (1, $$a$$), (1, $$b$$)')
    failed = engine.apply(ctx, tenant, index)
    assert failed.outcome is Outcome.FAILED
    assert (failed.error or "").startswith("statement 3 at line 3: could not create unique index")
    recorded = row(admin, tenant.uid, 2)
    assert recorded is not None and (recorded["state"], recorded["done"]) == ("failed", 2)
    invalid = "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid"
    assert scalar(admin, invalid, f'"{schema}".events_id') == 1  # what CONCURRENTLY leaves
    admin.execute(f'DELETE FROM "{schema}".events WHERE kind = $$b$$')
    assert engine.apply(ctx, tenant, index).outcome is Outcome.APPLIED
    assert scalar(admin, f'SELECT count(*) FROM "{schema}".audit') == 1  # not run twice
    valid = admin.execute(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"
        " AND i.indrelid <> to_regclass(%s) ORDER BY 1",
        (schema, f'"{schema}".{markers.MARKER_TABLE}'),
    ).fetchall()
    assert valid == [("events_id", True), ("events_kind", True)]
    assert row(admin, tenant.uid, 2)["state"] == "applied"  # type: ignore[index]
    with ctx.server.pool.connection() as conn:  # the operator's sessions never took them
        assert scalar(conn, "SHOW search_path") == "pg_catalog,pg_temp"
        assert scalar(conn, "SHOW statement_timeout") == "0"
    login = scoping.session_login(tenant)
    with ctx.server.sessions.session(*login) as conn:  # nor does the next tenant session
        assert scalar(conn, "SHOW statement_timeout") == "0"
        assert scalar(conn, "SHOW search_path") == "pg_catalog,pg_temp"  # not the role's


def test_revert_goes_in_reverse_order(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    one = script(1, "CREATE TABLE one (id int)", down="DROP TABLE one")
    two = script(2, "ALTER TABLE one ADD COLUMN two int", down="ALTER TABLE one DROP COLUMN two")
    for item in (one, two):
        assert engine.apply(ctx, tenant, item).outcome is Outcome.APPLIED
    refused = engine.revert(ctx, tenant, one)
    assert refused.outcome is Outcome.BLOCKED and refused.waiting_for == (2,)
    assert engine.revert(ctx, tenant, two).outcome is Outcome.ROLLED_BACK
    assert engine.revert(ctx, tenant, one).outcome is Outcome.ROLLED_BACK
    assert engine.revert(ctx, tenant, one).outcome is Outcome.NOT_APPLIED
    assert row(admin, tenant.uid, 1)["state"] == "rolled_back"  # type: ignore[index]
    assert (
        scalar(
            admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
            tenant.schema_name,
            markers.MARKER_TABLE,
        )
        == 0
    )


def test_a_failed_down_keeps_the_version_applied(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    one = script(1, "CREATE TABLE kept (id int)", down="DROP TABLE missing")
    assert engine.apply(ctx, tenant, one).outcome is Outcome.APPLIED
    result = engine.revert(ctx, tenant, one)
    assert result.outcome is Outcome.FAILED and "missing" in (result.error or "")
    recorded = row(admin, tenant.uid, 1)
    assert recorded is not None and recorded["state"] == "applied"
    assert recorded["error"] == result.error


def test_database_tenant_runs_in_its_own_database_and_recovers_a_lost_ledger_write(
    ctx: engine.Context, server: commands.Server, admin: psycopg.Connection, database_url: str
) -> None:
    tenant = provision(server, Isolation.DATABASE)
    first = script(1, CREATE_LEADS, down="DROP TABLE leads")
    assert engine.apply(ctx, tenant, first).outcome is Outcome.APPLIED
    with in_tenant(database_url, tenant) as conn:
        assert (
            scalar(conn, "SELECT tableowner FROM pg_tables WHERE tablename = 'leads'")
            == tenant.owner_role
        )
        assert (
            scalar(conn, "SELECT checksum FROM public.tenantdb_migrations WHERE version = 1")
            == first.checksum
        )
    # The operator died after the tenant's commit and before the ledger's:
    admin.execute("DELETE FROM tenantdb.migration_ledger WHERE tenant_uid = %s", (tenant.uid,))
    assert engine.apply(ctx, tenant, first).outcome is Outcome.APPLIED  # recorded, not re-run
    assert row(admin, tenant.uid, 1)["state"] == "applied"  # type: ignore[index]
    assert engine.revert(ctx, tenant, first).outcome is Outcome.ROLLED_BACK
    with in_tenant(database_url, tenant) as conn:
        assert scalar(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'leads'") == 0
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM public.tenantdb_migrations WHERE rolled_back_at IS NULL",
            )
            == 0
        )


def test_shared_migration_runs_once_as_the_shared_owner_under_rls(
    ctx: engine.Context, server: commands.Server, admin: psycopg.Connection
) -> None:
    table = f"notes_{uuid.uuid4().hex[:8]}"
    change = script(
        900_000 + int(uuid.uuid4().int % 1000),
        f"CREATE TABLE {table} (id bigint, tenant_id uuid NOT NULL, body text)",
        scope=api.Scope.SHARED,
    )
    target = engine.shared_target(server, "engine")
    result = engine.apply(ctx, target, change)
    assert result.outcome is Outcome.APPLIED, result.error
    space = naming.shared_names("engine", server.shared_schema)
    assert (target.uid, target.schema_name) == ("shared:engine", space.schema)
    owner, rls, forced = admin.execute(
        "SELECT pg_get_userbyid(relowner), relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE oid = %s::regclass",
        (f"{space.schema}.{table}",),
    ).fetchone()  # type: ignore[misc]
    assert (owner, rls, forced) == (space.owner_role, True, True)
    assert engine.apply(ctx, target, change).outcome is Outcome.ALREADY_APPLIED
    admin.execute(f"DROP TABLE {space.schema}.{table}")  # shared by the whole session
    with pytest.raises(errors.MigrationError):
        engine.apply(ctx, provision(server, Isolation.SHARED), script(1, "SELECT 1"))


def test_two_workers_never_migrate_one_tenant_at_once(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    slow = script(1, "SELECT pg_sleep(0.5); CREATE TABLE raced (id int)")
    results: list[engine.Result] = []
    threads = [
        threading.Thread(target=lambda: results.append(engine.apply(ctx, tenant, slow)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes.count("applied") == 1
    assert set(outcomes) <= {"applied", "busy", "alreadyApplied"}
    assert row(admin, tenant.uid, 1)["attempts"] == 1  # type: ignore[index]


def test_ledger_reads_many_tenants_in_one_query(
    ctx: engine.Context, server: commands.Server
) -> None:
    tenants = [provision(server) for _ in range(3)]
    change = script(1, "CREATE TABLE x (id int)")
    engine.apply(ctx, tenants[0], change)
    engine.apply(ctx, tenants[1], script(1, "CREATE TABLE x (id nosuchtype)"))
    with server.pool.connection() as conn:
        rows = ledger.fetch_rows(conn, server.control_schema, [t.uid for t in tenants], 1)
    states = [rows[t.uid].state for t in tenants]
    assert states == [ledger.State.APPLIED, ledger.State.FAILED, None]


@pytest.fixture(autouse=True)
def _no_leaked_session_state(server: commands.Server) -> Iterator[None]:
    yield
    with server.pool.connection() as conn:
        assert scalar(conn, "SELECT current_user") == scalar(conn, "SELECT session_user")
        locks = scalar(
            conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        )
        assert locks == 0


def test_a_tenant_whose_role_vanished_is_retried_not_an_error(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    ghost = dataclasses.replace(tenant, uid=str(uuid.uuid4()), owner_role="t_gone_owner")
    result = engine.apply(ctx, ghost, script(1, "CREATE TABLE never (id int)"))
    assert result.outcome is Outcome.RETRY
    assert 'role "t_gone_owner" does not exist' in (result.error or "")
    assert row(admin, ghost.uid, 1) is None


def test_timeouts_the_server_refuses_fail_the_migration_with_its_message(
    server: commands.Server, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    """Not a silent retry per tenant: one failure saying what PostgreSQL said."""
    too_long = script(1, "CREATE TABLE never (id int)", statement_timeout="999999999h")
    policy = rollout.Policy(max_parallel=1)
    refused = 'invalid value for parameter "statement_timeout": "999999999h"'
    with pytest.raises(errors.InvalidScript, match=refused):
        migration_commands.upgrade(server, too_long, [tenant], applied_by="tests", policy=policy)
    with pytest.raises(errors.InvalidScript, match=refused):
        migration_commands.catch_up(server, [too_long], tenant.uid, "tests")
    assert row(admin, tenant.uid, 1) is None  # nothing ran, nothing recorded
    fine = dataclasses.replace(too_long, statement_timeout="596h")
    report = migration_commands.upgrade(server, fine, [tenant], applied_by="tests", policy=policy)
    assert [r.outcome for r in report.results] == [Outcome.APPLIED]


def test_a_version_applied_before_markers_existed_is_really_rolled_back(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    """An installation upgraded from a version without markers has ledger rows and no
    marker: its ``down`` must run, not be taken for one that already committed."""
    one = script(1, "CREATE TABLE early (id int)", down="DROP TABLE early")
    assert engine.apply(ctx, tenant, one).outcome is Outcome.APPLIED
    admin.execute(f'DELETE FROM "{tenant.schema_name}".{markers.MARKER_TABLE}')
    assert engine.revert(ctx, tenant, one).outcome is Outcome.ROLLED_BACK
    table = f'"{tenant.schema_name}".early'
    assert scalar(admin, "SELECT to_regclass(%s) IS NULL", table) is True


def test_a_down_that_committed_before_its_ledger_row_is_not_run_again(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    one = script(1, "CREATE TABLE once (id int)", down="DROP TABLE once")
    assert engine.apply(ctx, tenant, one).outcome is Outcome.APPLIED
    # The operator died after the tenant's commit of the down and before the ledger's:
    admin.execute(f'DROP TABLE "{tenant.schema_name}".once')
    admin.execute(
        f'UPDATE "{tenant.schema_name}".{markers.MARKER_TABLE} SET rolled_back_at = now()'
    )
    result = engine.revert(ctx, tenant, one)
    assert result.outcome is Outcome.ROLLED_BACK, result.error  # running DROP again would fail
    assert row(admin, tenant.uid, 1)["state"] == "rolled_back"  # type: ignore[index]
    assert engine.apply(ctx, tenant, one).outcome is Outcome.APPLIED  # and up again
    marked = scalar(
        admin,
        f'SELECT rolled_back_at IS NULL FROM "{tenant.schema_name}".{markers.MARKER_TABLE}',
    )
    assert marked is True


def test_operator_and_tenant_sessions_keep_tcp_alive_on_both_ends(
    ctx: engine.Context, tenant: scoping.TenantLocation
) -> None:
    """A vanished peer is noticed in about a minute: the server ends the session of an
    operator that is gone, and its locks with it (pools.KEEPALIVE_IDLE)."""
    idle = str(pools.KEEPALIVE_IDLE)
    with ctx.server.pool.connection() as conn:
        assert scalar(conn, "SHOW tcp_keepalives_idle") == idle
        assert scalar(conn, "SHOW tcp_keepalives_count") == str(pools.KEEPALIVE_COUNT)
        assert conn.info.get_parameters()["keepalives_idle"] == str(pools.KEEPALIVE_IDLE)
    with ctx.server.sessions.session(*scoping.session_login(tenant)) as conn:
        conn.execute("DISCARD ALL")
        assert scalar(conn, "SHOW tcp_keepalives_idle") == idle
        assert scalar(conn, "SHOW tcp_keepalives_interval") == str(pools.KEEPALIVE_INTERVAL)
        assert conn.info.get_parameters()["keepalives_idle"] == str(pools.KEEPALIVE_IDLE)


def test_where_a_version_is_applied_a_lost_ledger_write_is_recorded_not_run_again(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    """Version 1 is applied, so version 2 writes its marker without reading the table:
    after a crash between version 2's commits, that write fails and the marker is read."""
    assert engine.apply(ctx, tenant, script(1, "CREATE TABLE one (id int)")).outcome is (
        Outcome.APPLIED
    )
    two = script(2, "CREATE TABLE two (id int)")
    assert engine.apply(ctx, tenant, two).outcome is Outcome.APPLIED
    admin.execute(
        "DELETE FROM tenantdb.migration_ledger WHERE tenant_uid = %s AND version = 2",
        (tenant.uid,),
    )
    result = engine.apply(ctx, tenant, two)  # running CREATE TABLE again would fail
    assert result.outcome is Outcome.APPLIED, result.error
    assert row(admin, tenant.uid, 2)["state"] == "applied"  # type: ignore[index]


@pytest.mark.parametrize(
    "up",
    [
        "CREATE TABLE dup (id int PRIMARY KEY);\nINSERT INTO dup VALUES (1), (1)",
        "SELECT * FROM gone",
    ],
    ids=["unique-violation", "undefined-table"],
)
def test_where_a_version_is_applied_the_scripts_own_error_is_its_failure(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection, up: str
) -> None:
    """The errors a marker written unread can meet (a duplicate, no table) are the
    script's own when the marker table says so: reported with the database's message."""
    assert engine.apply(ctx, tenant, script(1, "CREATE TABLE one (id int)")).outcome is (
        Outcome.APPLIED
    )
    result = engine.apply(ctx, tenant, script(2, up))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and ("dup_pkey" in result.error or '"gone"' in result.error)
    assert scalar(admin, "SELECT to_regclass(%s) IS NULL", f'"{tenant.schema_name}".dup') is True
    marked = scalar(
        admin,
        f'SELECT count(*) FROM "{tenant.schema_name}".{markers.MARKER_TABLE} WHERE version = 2',
    )
    assert marked == 0
    assert row(admin, tenant.uid, 2)["state"] == "failed"  # type: ignore[index]


def test_where_a_version_is_applied_a_dropped_marker_table_is_made_again(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    """The owner may drop its marker table (or it predates markers): the next version
    finds no table where it expected one, and creates it closed to the login role."""
    assert engine.apply(ctx, tenant, script(1, "CREATE TABLE one (id int)")).outcome is (
        Outcome.APPLIED
    )
    admin.execute(f'DROP TABLE "{tenant.schema_name}".{markers.MARKER_TABLE}')
    result = engine.apply(ctx, tenant, script(2, "CREATE TABLE two (id int)"))
    assert result.outcome is Outcome.APPLIED, result.error
    table = f'"{tenant.schema_name}".{markers.MARKER_TABLE}'
    assert scalar(admin, f"SELECT checksum IS NOT NULL FROM {table} WHERE version = 2") is True
    login_may = scalar(
        admin, "SELECT has_table_privilege(%s, %s, 'SELECT')", tenant.login_role, table
    )
    assert login_may is False


def test_where_a_version_is_applied_a_rolled_back_version_applies_again(
    ctx: engine.Context, tenant: scoping.TenantLocation, admin: psycopg.Connection
) -> None:
    assert engine.apply(ctx, tenant, script(1, "CREATE TABLE one (id int)")).outcome is (
        Outcome.APPLIED
    )
    two = script(2, "CREATE TABLE two (id int)", down="DROP TABLE two")
    assert engine.apply(ctx, tenant, two).outcome is Outcome.APPLIED
    assert engine.revert(ctx, tenant, two).outcome is Outcome.ROLLED_BACK
    result = engine.apply(ctx, tenant, two)
    assert result.outcome is Outcome.APPLIED, result.error
    table = f'"{tenant.schema_name}".{markers.MARKER_TABLE}'
    assert scalar(admin, f"SELECT rolled_back_at IS NULL FROM {table} WHERE version = 2") is True
    assert scalar(admin, "SELECT to_regclass(%s) IS NOT NULL", f'"{tenant.schema_name}".two')
