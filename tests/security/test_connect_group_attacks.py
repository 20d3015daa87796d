"""The connect group every schema and shared tenant inherits CONNECT from
(``core/connect_group.py``), attacked.

Every tenant of the operator's database is a member of the group, so it is a
channel between them: from a tenant's application (its login role), from a
Migration (its owner role), and by an administrator or another CREATEROLE
role that makes, joins or grants to the group behind the operator's back.
Against a real PostgreSQL server and the engine, as the operator runs it.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import conninfo, sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connect_group, creators, passwords, scoping
from tenantdb.core.migrations import engine
from tenantdb.settings import DEFAULT_PLANS
from tests import servers
from tests.integration.test_migrations_engine import script
from tests.integration.test_provisioning import as_before_the_group
from tests.security.test_creator_attacks import pinned, provisioned, refused, refused_migrations

pytestmark = pytest.mark.postgres
Outcome = engine.Outcome


def _group(server: commands.Server) -> str:
    with server.pool.connection() as conn:
        return connect_group.role_name(conn.info.user)


def _options(admin: psycopg.Connection, role: str, group: str) -> tuple[object, ...] | None:
    row = admin.execute(
        "SELECT a.inherit_option, a.set_option, a.admin_option FROM pg_auth_members a"
        " WHERE a.member = %s::regrole AND a.roleid = %s::regrole",
        (f'"{role}"', f'"{group}"'),
    ).fetchone()
    return None if row is None else tuple(row)


def test_a_tenant_connects_through_the_group_but_cannot_become_or_hand_it_on(
    server: commands.Server, database_url: str, admin: psycopg.Connection
) -> None:
    password = passwords.generate()
    tenant = provisioned(server, str(uuid.uuid4()), password)
    neighbour = provisioned(server, str(uuid.uuid4()), passwords.generate())
    group = _group(server)
    for role in (tenant.login_role, tenant.owner_role):
        assert _options(admin, role, group) == (True, False, False)  # inherit, no SET, no ADMIN
    url = conninfo.make_conninfo(database_url, user=tenant.login_role, password=password)
    with psycopg.connect(url) as app:  # CONNECT, through the group alone
        refused(app, f'SET ROLE "{group}"')
        refused(app, f'SET "role" TO "{group}"')
        refused(app, f"SELECT set_config('role', '{group}', false)")
        refused(app, f'SET SESSION AUTHORIZATION "{group}"')
        refused(app, f'GRANT "{group}" TO "{neighbour.login_role}"')
        refused(app, f'GRANT "{group}" TO CURRENT_USER WITH SET TRUE')
        refused(app, f'REVOKE "{group}" FROM "{neighbour.login_role}"')
        refused(app, f'ALTER ROLE "{group}" LOGIN')
        assert app.execute("SELECT current_user").fetchone() == (tenant.login_role,)
    assert _options(admin, neighbour.login_role, group) == (True, False, False)


def test_a_migration_cannot_hand_objects_or_the_group_to_anyone(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    tenant = provisioned(server, str(uuid.uuid4()), passwords.generate())
    group = _group(server)
    ctx = engine.Context(server=server, applied_by="tests")
    attacks = [
        f'CREATE TABLE handed (v int); ALTER TABLE handed OWNER TO "{group}"',
        f'CREATE SCHEMA handed AUTHORIZATION "{group}"',
        f'SET ROLE "{group}"',
        f'GRANT "{group}" TO CURRENT_USER WITH SET TRUE',
        f'GRANT "{group}" TO pg_read_all_data',
        f'GRANT pg_read_all_data TO "{group}"',
        f'REASSIGN OWNED BY CURRENT_USER TO "{group}"',
        f"CREATE FUNCTION esc() RETURNS text LANGUAGE sql SECURITY DEFINER SET role = '{group}'"
        " AS 'SELECT current_user::text'; SELECT esc()",
    ]
    refused_migrations(ctx, tenant, attacks)
    groups = admin.execute(
        "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole", (f'"{group}"',)
    ).fetchone()
    assert groups == (0,)
    assert _options(admin, tenant.owner_role, group) == (True, False, False)
    # A member may run DROP OWNED BY the group: it revokes only what the member granted,
    # so the group keeps the CONNECT every tenant connects through.
    dropped = engine.apply(ctx, tenant, script(len(attacks) + 1, f'DROP OWNED BY "{group}"'))
    assert dropped.outcome is Outcome.APPLIED, dropped.error
    connects = admin.execute(
        "SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a"
        " WHERE d.datname = current_database() AND a.grantee = %s::regrole"
        " AND a.privilege_type = 'CONNECT'",
        (f'"{group}"',),
    ).fetchone()
    assert connects == (1,)


def test_a_schema_opened_to_every_tenant_is_reported_and_closed(
    server: commands.Server, database_url: str, admin: psycopg.Connection
) -> None:
    """What a tenant grants the group reaches every tenant, like a grant to PUBLIC: the
    isolation check reports its schema opened to either, and the repair closes it."""
    tenant = provisioned(server, str(uuid.uuid4()), passwords.generate())
    password = passwords.generate()
    neighbour = provisioned(server, str(uuid.uuid4()), password)
    group = _group(server)
    ctx = engine.Context(server=server, applied_by="tests")
    opening = (
        f'CREATE TABLE shown (v int); GRANT USAGE ON SCHEMA "{tenant.schema_name}" TO "{group}"'
    )
    assert engine.apply(ctx, tenant, script(1, opening)).outcome is Outcome.APPLIED
    url = conninfo.make_conninfo(database_url, user=neighbour.login_role, password=password)
    reach = "SELECT has_schema_privilege(%s, 'USAGE')"
    with psycopg.connect(url) as app:
        assert app.execute(reach, (tenant.schema_name,)).fetchone() == (True,)  # the channel
    findings = commands.verify_isolation(server, tenant.uid, tenant.name)
    assert f"PUBLIC or every tenant has privileges on schema {tenant.schema_name}" in findings
    request = commands.TenantRequest(
        uid=tenant.uid,
        name=tenant.name,
        namespace="creators",
        isolation=Isolation.SCHEMA,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )
    commands.repair_isolation(server, request, passwords.generate())
    assert commands.verify_isolation(server, tenant.uid, tenant.name) == []
    with psycopg.connect(url) as app:
        assert app.execute(reach, (tenant.schema_name,)).fetchone() == (False,)


def test_a_group_joined_to_a_role_behind_the_operators_back_is_refused_and_reported(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    """Every tenant would inherit what the group is granted: the operator refuses to start
    on it, and each tenant's isolation check names it."""
    tenant = provisioned(server, str(uuid.uuid4()), passwords.generate())
    group = sql.Identifier(_group(server))
    admin.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(group))
    try:
        with pytest.raises(connect_group.ConnectGroupForeign) as joined:
            commands.prepare(server)
        assert "is a member of pg_read_all_data" in str(joined.value)
        findings = commands.verify_isolation(server, tenant.uid, tenant.name)
        assert f"role {_group(server)} is a member of pg_read_all_data" in findings
    finally:
        admin.execute(sql.SQL("REVOKE pg_read_all_data FROM {}").format(group))
    commands.prepare(server)  # repaired: accepted again
    assert commands.verify_isolation(server, tenant.uid, tenant.name) == []


def test_a_group_someone_else_made_first_is_refused(
    other_operator: tuple[str, str], admin: psycopg.Connection
) -> None:
    name, url = other_operator
    squatted = connect_group.role_name(name)
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(squatted)))
    server = commands.open_server(servers.database_settings(url, control_schema=name), "g", 1)
    try:
        with pytest.raises(connect_group.ConnectGroupForeign) as refused_start:
            commands.prepare(server)
    finally:
        server.close()
    assert f"{name} holds no ADMIN OPTION on {squatted}" in str(refused_start.value)
    made = admin.execute(
        "SELECT count(*) FROM pg_roles WHERE starts_with(rolname, %s)",
        (creators.role_name(name, 0)[:-2],),
    ).fetchone()
    assert made == (0,)  # the creators made before the refusal were rolled back


def test_a_database_opened_to_every_tenant_is_reported_and_closed(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    """A ``database`` tenant's owner owns its database: CONNECT it grants the group would
    let every schema and shared tenant in, like CONNECT granted to PUBLIC."""
    request = commands.TenantRequest(
        uid=str(uuid.uuid4()),
        name=f"d{uuid.uuid4().hex[:10]}",
        namespace="creators",
        isolation=Isolation.DATABASE,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )
    commands.provision(server, request, passwords.generate(), reset_password=True)
    with server.pool.connection() as conn:
        tenant = scoping.load(conn, server.control_schema, request.uid)
    assert tenant is not None
    group = _group(server)
    ctx = engine.Context(server=server, applied_by="tests")
    opening = f'GRANT CONNECT ON DATABASE "{tenant.database_name}" TO "{group}"'
    assert engine.apply(ctx, tenant, script(1, opening)).outcome is Outcome.APPLIED
    findings = commands.verify_isolation(server, request.uid, request.name)
    assert f"PUBLIC or every tenant may connect to database {tenant.database_name}" in findings
    commands.repair_isolation(server, request, passwords.generate())
    assert commands.verify_isolation(server, request.uid, request.name) == []
    reach = "SELECT has_database_privilege(%s, %s, 'CONNECT')"
    assert admin.execute(reach, (group, tenant.database_name)).fetchone() == (False,)


def test_a_membership_of_the_group_that_may_set_it_is_reported(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    """An administrator's second grant of the group, ``WITH SET TRUE``, would let the
    tenant become the group: the isolation check names it until it is taken back."""
    tenant = provisioned(server, str(uuid.uuid4()), passwords.generate())
    group, login = sql.Identifier(_group(server)), sql.Identifier(tenant.login_role)
    admin.execute(sql.SQL("GRANT {} TO {} WITH SET TRUE").format(group, login))
    try:
        findings = commands.verify_isolation(server, tenant.uid, tenant.name)
        assert f"role {tenant.login_role} may set or administer {_group(server)}" in findings
    finally:
        admin.execute(sql.SQL("REVOKE {} FROM {}").format(group, login))
    assert commands.verify_isolation(server, tenant.uid, tenant.name) == []
    assert _options(admin, tenant.login_role, _group(server)) == (True, False, False)


PLANTED = """
CREATE FUNCTION aclexplode(acl aclitem[]) RETURNS SETOF record LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'planted aclexplode called'; END $$;
CREATE FUNCTION to_jsonb(v anyelement) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'planted to_jsonb called'; END $$;
CREATE FUNCTION pg_has_role(a name, b oid, c text) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'planted pg_has_role called'; END $$;
CREATE TABLE pg_auth_members (member oid, roleid oid, admin_option bool);
"""
"""Look-alikes of what the group's queries read, in the tenant's own schema."""


def test_objects_planted_under_the_groups_queries_names_are_never_resolved(
    server: commands.Server,
) -> None:
    """A Migration plants functions and a table named like those the connect group's
    queries use, then opens its schema to the group: provisioning, the isolation check
    and the repair run on sessions whose search_path is pinned, never call them, and
    still see the real catalogs (the opened schema is reported and closed)."""
    tenant = provisioned(server, str(uuid.uuid4()), passwords.generate())
    ctx = engine.Context(server=server, applied_by="tests")
    opening = f'{PLANTED}; GRANT USAGE ON SCHEMA "{tenant.schema_name}" TO "{_group(server)}"'
    assert engine.apply(ctx, tenant, script(1, opening)).outcome is Outcome.APPLIED
    findings = commands.verify_isolation(server, tenant.uid, tenant.name)
    assert f"PUBLIC or every tenant has privileges on schema {tenant.schema_name}" in findings
    commands.repair_isolation(server, _request(tenant), passwords.generate())
    assert commands.verify_isolation(server, tenant.uid, tenant.name) == []


def _request(tenant: scoping.TenantLocation) -> commands.TenantRequest:
    return commands.TenantRequest(
        uid=tenant.uid,
        name=tenant.name,
        namespace=tenant.namespace,
        isolation=Isolation(tenant.isolation),
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )


def test_the_group_leaves_nothing_on_the_operators_pooled_session(
    one_session: commands.Server,
) -> None:
    """Start-up's ``SET LOCAL createrole_self_grant`` for the group, a tenant joining it,
    its repair and its deletion, all on the one pooled connection: current user, search
    path, createrole_self_grant and lock_timeout are the same after each."""
    before = pinned(one_session)
    commands.prepare(one_session)
    assert pinned(one_session) == before
    tenant = provisioned(one_session, str(uuid.uuid4()), passwords.generate())
    assert pinned(one_session) == before
    commands.repair_isolation(one_session, _request(tenant), passwords.generate())
    assert pinned(one_session) == before
    commands.deprovision(one_session, tenant.uid, tenant.name, drop=True)
    assert pinned(one_session) == before


def test_catalog_locks_a_tenant_may_take_hold_up_no_join_move_or_deletion(
    one_session: commands.Server, database_url: str, admin: psycopg.Connection
) -> None:
    """A tenant's application may take ACCESS SHARE on the catalogs joining the group and
    moving off a grant of one's own write (and no stronger lock): held in an open
    transaction, it holds up neither a new tenant's join, nor a tenant from before the
    group moving to it (a REVOKE on the database's row), nor a deletion (the operator's
    lock wait is 1 s here)."""
    password = passwords.generate()
    holder_tenant = provisioned(one_session, str(uuid.uuid4()), password)
    legacy = provisioned(one_session, str(uuid.uuid4()), passwords.generate())
    as_before_the_group(admin, one_session, [legacy.login_role, legacy.owner_role])
    url = conninfo.make_conninfo(database_url, user=holder_tenant.login_role, password=password)
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE pg_catalog.pg_auth_members, pg_catalog.pg_database"
                       " IN ACCESS SHARE MODE")  # fmt: skip
        with psycopg.connect(url) as stronger:
            refused(stronger, "LOCK TABLE pg_catalog.pg_auth_members IN SHARE MODE")
        joined = provisioned(one_session, str(uuid.uuid4()), passwords.generate())
        commands.provision(one_session, _request(legacy), passwords.generate(), False)
        commands.deprovision(one_session, joined.uid, joined.name, drop=True)
        assert holder.execute("SELECT current_user").fetchone() == (holder_tenant.login_role,)
    group = _group(one_session)
    assert _options(admin, legacy.owner_role, group) == (True, False, False)
    own = admin.execute(
        "SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a"
        " WHERE d.datname = current_database() AND a.grantee = ANY(%s::regrole[])",
        ([f'"{legacy.login_role}"', f'"{legacy.owner_role}"'],),
    ).fetchone()
    assert own == (0,)  # moved to the group
