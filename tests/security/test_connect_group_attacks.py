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
from tests.security.test_creator_attacks import provisioned, refused

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
        refused(app, f"SELECT set_config('role', '{group}', false)")
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
    ]
    for version, attack in enumerate(attacks, start=1):
        result = engine.apply(ctx, tenant, script(version, attack))
        assert result.outcome is Outcome.FAILED, attack
        assert result.error is not None and "42501" in result.error, result.error
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
