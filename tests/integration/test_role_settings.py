"""The isolation check reads role settings back and the repair restores the plan's."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands
from tenantdb.settings import DEFAULT_PLANS

pytestmark = pytest.mark.postgres
MODES = list(Isolation)


def request(name: str, mode: Isolation, plan: str = "standard") -> commands.TenantRequest:
    return commands.TenantRequest(
        uid=str(uuid.uuid4()),
        name=name,
        namespace="default",
        isolation=mode,
        plan=plan,
        limits=DEFAULT_PLANS[plan],
    )


def role_findings(server: commands.Server, req: commands.TenantRequest) -> list[str]:
    """The check's findings about the tenant's roles (other tests may leave shared tables open)."""
    return [
        f
        for f in commands.verify_isolation(server, req.uid, req.name)
        if f.startswith(("role ", "plan "))
    ]


def role_settings(admin: psycopg.Connection, role: str) -> dict[str, list[str]]:
    """pg_db_role_setting of one role: '' for role-wide, else the database's name."""
    rows = admin.execute(
        "SELECT coalesce(d.datname, ''), s.setconfig FROM pg_db_role_setting s"
        " JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE r.rolname = %s",
        (role,),
    ).fetchall()
    return {database: sorted(config) for database, config in rows}


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_a_freshly_provisioned_tenant_has_no_setting_findings(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation
) -> None:
    """What the check expects is exactly what provisioning sets, in every mode."""
    req = request(f"settled-{mode}", mode, plan="enterprise")
    tenant = commands.provision(server, req, "pw", True)
    assert role_findings(server, req) == []
    settings = role_settings(admin, tenant.names.login_role)
    assert list(settings) == [""]
    assert "work_mem=64MB" in settings[""] and "statement_timeout=300s" in settings[""]


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_changed_extra_and_per_database_settings_are_found_and_removed(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation
) -> None:
    req = request(f"fiddled-{mode}", mode)
    tenant = commands.provision(server, req, "pw", True)
    login, owner = tenant.names.login_role, tenant.names.owner_role
    expected = role_settings(admin, login)
    admin.execute(f'ALTER ROLE "{login}" SET statement_timeout = 0')
    admin.execute(f"ALTER ROLE \"{login}\" SET work_mem = '2GB'")
    admin.execute(f'ALTER ROLE "{login}" RESET search_path')
    admin.execute(f'ALTER ROLE "{login}" IN DATABASE "{tenant.database}" SET lock_timeout = 0')
    admin.execute(f'ALTER ROLE "{login}" IN DATABASE template1 SET search_path = public')
    admin.execute(f'ALTER ROLE "{login}" CONNECTION LIMIT 99')
    if mode is not Isolation.SHARED:
        admin.execute(f"ALTER ROLE \"{owner}\" SET enable_seqscan = 'off'")

    findings = role_findings(server, req)

    limits = DEFAULT_PLANS["standard"]
    wanted = [
        f"role {login} sets statement_timeout to 0, not {limits.statement_timeout}",
        f"role {login} sets work_mem, which the operator does not",
        f"role {login} lacks search_path = ",
        f"role {login} has settings in database {tenant.database}: lock_timeout",
        f"role {login} has settings in database template1: search_path",
        f"role {login} has CONNECTION LIMIT 99, not {limits.connection_limit}",
    ]
    if mode is not Isolation.SHARED:
        wanted.append(f"role {owner} sets enable_seqscan, which the operator does not")
    for finding in wanted:
        assert any(f.startswith(finding) for f in findings), (finding, findings)

    commands.repair_isolation(server, req, "pw")

    assert role_findings(server, req) == []
    assert role_settings(admin, login) == expected
    if mode is not Isolation.SHARED:
        assert role_settings(admin, owner) == {"": [f"search_path={_path(tenant, mode)}"]}
    row = admin.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (login,))
    assert row.fetchone() == (limits.connection_limit,)


def _path(tenant: commands.Provisioned, mode: Isolation) -> str:
    return "public" if mode is Isolation.DATABASE else tenant.schema


def test_a_tenant_can_set_its_own_role_settings_and_the_check_sees_it(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    """The attack is real: the login role alters its own defaults without any privilege."""
    req = request("selfish", Isolation.SCHEMA)
    password = "pw-selfish"
    tenant = commands.provision(server, req, password, True)
    url = psycopg.conninfo.make_conninfo(
        server.url, user=tenant.names.login_role, password=password, dbname=tenant.database
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
        conn.execute(
            f"ALTER ROLE CURRENT_USER IN DATABASE \"{tenant.database}\" SET work_mem = '1GB'"
        )
    findings = role_findings(server, req)
    assert len(findings) == 2, findings
    commands.repair_isolation(server, req, password)
    assert role_findings(server, req) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)
