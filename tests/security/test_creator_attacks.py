"""The creator roles that make tenants' roles (``core/creators.py``), attacked.

A creator holds ADMIN OPTION on every role it made, so it is worth stealing:
from a tenant's application (its login role), from a Migration (its owner
role), through another tenant made by the same creator, and by a role that
made or joined a creator before the operator did. Against a real PostgreSQL
server and the engine, as the operator runs it.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import conninfo, sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, creators, passwords, scoping
from tenantdb.core.migrations import engine
from tenantdb.settings import DEFAULT_PLANS
from tests import servers
from tests.integration.test_migrations_engine import script

pytestmark = pytest.mark.postgres
Outcome = engine.Outcome


def refused_migrations(
    ctx: engine.Context, tenant: scoping.TenantLocation, attacks: list[str], first: int = 1
) -> None:
    """Each attack as a Migration of its own (versions from ``first``), refused: 42501."""
    for version, attack in enumerate(attacks, start=first):
        result = engine.apply(ctx, tenant, script(version, attack))
        assert result.outcome is Outcome.FAILED, attack
        assert result.error is not None and "42501" in result.error, result.error


def provisioned(server: commands.Server, uid: str, password: str) -> scoping.TenantLocation:
    request = commands.TenantRequest(
        uid=uid,
        name=f"c{uuid.uuid4().hex[:10]}",
        namespace="creators",
        isolation=Isolation.SCHEMA,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )
    commands.provision(server, request, password, reset_password=True)
    with server.pool.connection() as conn:
        location = scoping.load(conn, server.control_schema, uid)
    assert location is not None
    return location


def _uid_of_creator(index: int) -> str:
    """A uid ``creators.pick`` gives to creator ``index``."""
    while True:
        uid = str(uuid.uuid4())
        if creators.pick(uid) == creators.function_name(index):
            return uid


def _creator_of(admin: psycopg.Connection, role: str) -> str:
    row = admin.execute(
        "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member"
        " JOIN pg_roles r ON r.oid = a.roleid WHERE r.rolname = %s AND a.admin_option",
        (role,),
    ).fetchone()
    assert row is not None
    return str(row[0])


def _operator(server: commands.Server) -> str:
    with server.pool.connection() as conn:
        return str(conn.info.user)


def refused(conn: psycopg.Connection, statement: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute(statement)
    conn.rollback()
    return str(refused.value)


def test_a_tenants_roles_are_its_creators_and_the_operator_joins_none_of_them(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    tenant = provisioned(server, _uid_of_creator(3), passwords.generate())
    operator = _operator(server)
    expected = creators.role_name(operator, 3)
    assert _creator_of(admin, tenant.login_role) == expected
    assert _creator_of(admin, tenant.owner_role) == expected
    direct = admin.execute(
        "SELECT count(*) FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
        " JOIN pg_roles m ON m.oid = a.member WHERE m.rolname = %s AND r.rolname = ANY(%s)",
        (operator, [tenant.login_role, tenant.owner_role]),
    ).fetchone()
    assert direct == (0,)  # its memberships do not grow with the tenants
    executors = admin.execute(
        "SELECT DISTINCT a.grantee::regrole::text FROM pg_proc p,"
        " aclexplode(p.proacl) a WHERE p.pronamespace = 'tenantdb'::regnamespace"
        " AND starts_with(p.proname, 'as_creator_') AND a.privilege_type = 'EXECUTE'"
        " AND a.grantee <> p.proowner"
    ).fetchall()
    assert executors == [(operator,)]  # PUBLIC has none


def test_a_tenant_application_cannot_reach_its_creator(
    server: commands.Server, database_url: str, admin: psycopg.Connection
) -> None:
    password = passwords.generate()
    tenant = provisioned(server, _uid_of_creator(5), password)
    neighbour = provisioned(server, _uid_of_creator(5), passwords.generate())  # same creator
    creator = _creator_of(admin, tenant.login_role)
    url = conninfo.make_conninfo(database_url, user=tenant.login_role, password=password)
    with psycopg.connect(url) as app:
        call = "SELECT tenantdb.as_creator_05('ALTER ROLE CURRENT_USER CREATEROLE')"
        assert "permission denied for schema tenantdb" in refused(app, call)
        refused(app, f'SET ROLE "{creator}"')
        refused(app, f"SELECT set_config('role', '{creator}', false)")
        refused(app, f'SET SESSION AUTHORIZATION "{creator}"')
        refused(app, f'GRANT "{creator}" TO CURRENT_USER')
        refused(app, f'GRANT "{neighbour.login_role}" TO CURRENT_USER')
        refused(app, f"ALTER ROLE \"{neighbour.login_role}\" PASSWORD 'taken'")
        assert app.execute("SELECT current_user").fetchone() == (tenant.login_role,)


def test_a_migration_cannot_use_its_creator_or_its_neighbours(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    tenant = provisioned(server, _uid_of_creator(7), passwords.generate())
    neighbour = provisioned(server, _uid_of_creator(7), passwords.generate())
    creator = _creator_of(admin, tenant.owner_role)
    ctx = engine.Context(server=server, applied_by="tests")
    attacks = [
        "SELECT tenantdb.as_creator_07('ALTER ROLE CURRENT_USER CREATEROLE')",
        f'GRANT "{creator}" TO CURRENT_USER',
        f'GRANT "{neighbour.owner_role}" TO CURRENT_USER',
        f"ALTER ROLE \"{neighbour.login_role}\" PASSWORD 'taken'",
        f'CREATE SCHEMA stolen AUTHORIZATION "{neighbour.owner_role}"',
    ]
    refused_migrations(ctx, tenant, attacks)
    owner_attributes = admin.execute(
        "SELECT rolcreaterole, rolsuper FROM pg_roles WHERE rolname = %s", (tenant.owner_role,)
    ).fetchone()
    assert owner_attributes == (False, False)
    members = admin.execute(
        "SELECT count(DISTINCT a.member) FROM pg_auth_members a"
        " JOIN pg_roles r ON r.oid = a.roleid WHERE r.rolname = %s",
        (creator,),
    ).fetchone()
    assert members == (1,)  # the operator, still alone


def test_a_creator_someone_else_made_first_is_refused(
    other_operator: tuple[str, str], admin: psycopg.Connection
) -> None:
    name, url = other_operator
    squatted = creators.role_name(name, 0)
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE").format(sql.Identifier(squatted)))
    server = commands.open_server(servers.database_settings(url, control_schema=name), "c", 1)
    try:
        with pytest.raises(creators.CreatorForeign) as refused:
            commands.prepare(server)
    finally:
        server.close()
    assert f"{name} holds no ADMIN OPTION on {squatted}" in str(refused.value)
    made = admin.execute(
        "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, %s)", (f"{name}_creator_",)
    ).fetchone()
    assert made == (1,)  # the squatter's alone: the operator's were rolled back


def test_a_creator_joined_or_changed_behind_the_operators_back_is_refused(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    operator = _operator(server)
    creator = sql.Identifier(creators.role_name(operator, 9))
    intruder = f"intruder_{uuid.uuid4().hex[:6]}"
    admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(intruder)))
    try:
        admin.execute(sql.SQL("GRANT {} TO {}").format(creator, sql.Identifier(intruder)))
        with pytest.raises(creators.CreatorForeign) as joined:
            commands.prepare(server)
        assert f"has other members: {intruder}" in str(joined.value)
        admin.execute(sql.SQL("REVOKE {} FROM {}").format(creator, sql.Identifier(intruder)))
        admin.execute(sql.SQL("ALTER ROLE {} LOGIN").format(creator))
        with pytest.raises(creators.CreatorForeign) as login:
            commands.prepare(server)
        assert "may log in" in str(login.value)
    finally:
        admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(creator))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(intruder)))
    commands.prepare(server)  # repaired: accepted again


def test_a_failing_batch_does_not_quote_its_statements_or_their_verifiers(
    server: commands.Server,
) -> None:
    tenant = provisioned(server, _uid_of_creator(11), passwords.generate())
    verifier = passwords.scram_verifier("never-in-an-error")
    again = sql.SQL("CREATE ROLE {} PASSWORD {}").format(
        sql.Identifier(tenant.login_role), sql.Literal(verifier)
    )
    with server.pool.connection() as conn:
        batch = creators.run_as(conn, server.control_schema, creators.function_name(11), [again])
        with pytest.raises(psycopg.errors.DuplicateObject) as failed:
            conn.execute(batch)
        conn.rollback()
    assert "already exists" in str(failed.value)
    assert "SCRAM-SHA-256" not in str(failed.value)
    assert verifier not in str(failed.value.diag.context or "")


def pinned(server: commands.Server) -> tuple[object, ...]:
    with server.pool.connection() as conn:
        row = conn.execute(
            "SELECT current_user = session_user, current_setting('search_path'),"
            " current_setting('createrole_self_grant'), current_setting('lock_timeout')"
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_creator_batch_leaves_nothing_on_the_operators_pooled_session(
    one_session: commands.Server,
) -> None:
    before = pinned(one_session)
    assert before[:2] == (True, "pg_catalog,pg_temp")
    tenant = provisioned(one_session, _uid_of_creator(15), passwords.generate())
    assert pinned(one_session) == before  # creation, through the creator's function
    again = sql.SQL("CREATE ROLE {}").format(sql.Identifier(tenant.login_role))
    with one_session.pool.connection() as conn:
        batch = creators.run_as(
            conn, one_session.control_schema, creators.pick(tenant.uid), [again]
        )
        with pytest.raises(psycopg.errors.DuplicateObject):
            conn.execute(batch)
        conn.rollback()
    assert pinned(one_session) == before  # a batch that failed inside the function
    commands.deprovision(one_session, tenant.uid, tenant.name, drop=True)
    assert pinned(one_session) == before


def test_a_lock_the_tenant_holds_stalls_neither_its_deletion_nor_its_neighbours(
    one_session: commands.Server, database_url: str, admin: psycopg.Connection
) -> None:
    password = passwords.generate()
    held = provisioned(one_session, _uid_of_creator(13), password)
    neighbour = provisioned(one_session, _uid_of_creator(13), passwords.generate())
    ctx = engine.Context(server=one_session, applied_by="tests")
    applied = engine.apply(ctx, held, script(1, "CREATE TABLE held (id int)"))
    assert applied.outcome is Outcome.APPLIED
    url = conninfo.make_conninfo(database_url, user=held.login_role, password=password)
    with psycopg.connect(url) as app:
        app.execute("SELECT count(*) FROM held")  # an open transaction keeps its lock
        commands.deprovision(one_session, neighbour.uid, neighbour.name, drop=True)
        assert app.execute("SELECT 1").fetchone() == (1,)  # the neighbour's left it alone
        commands.deprovision(one_session, held.uid, held.name, drop=True)  # not held up
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")  # its session was ended, and its lock with it
    gone = admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)",
        ([held.login_role, held.owner_role, neighbour.login_role, neighbour.owner_role],),
    ).fetchone()
    assert gone == (0,)
    assert admin.execute("SELECT to_regnamespace(%s)", (held.schema_name,)).fetchone() == (None,)
