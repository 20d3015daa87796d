"""Provisioning in every isolation mode, against a real PostgreSQL server."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import conninfo

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connect_group, errors, locking, naming, passwords, securing
from tenantdb.settings import DEFAULT_PLANS
from tests import servers

pytestmark = pytest.mark.postgres
MODES = list(Isolation)


def request(
    name: str, isolation: Isolation = Isolation.SCHEMA, **overrides: object
) -> commands.TenantRequest:
    fields: dict[str, object] = {
        "uid": str(uuid.uuid4()),
        "name": name,
        "namespace": "default",
        "isolation": isolation,
        "plan": "standard",
        "limits": DEFAULT_PLANS["standard"],
        **overrides,
    }
    return commands.TenantRequest(**fields)  # type: ignore[arg-type]


def login_url(server: commands.Server, tenant: commands.Provisioned, password: str) -> str:
    return conninfo.make_conninfo(
        server.url,
        user=tenant.names.login_role,
        password=password,
        dbname=tenant.database,
        options="",
    )


def as_owner(server: commands.Server, tenant: commands.Provisioned, statement: str) -> None:
    """DDL the way migrations run it: on a session as the owner role, in the tenant's schema."""
    with server.sessions.session(tenant.owner_role, tenant.database) as conn:
        conn.execute(f'SET search_path = "{tenant.schema}"')
        conn.execute(statement)


def count(admin: psycopg.Connection, query: str, *params: object) -> int:
    row = admin.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def test_schema_tenant_gets_schema_roles_and_a_working_login(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    password = passwords.generate()
    tenant = commands.provision(server, request("alpha"), password, reset_password=True)
    names = tenant.names
    owner = admin.execute(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (names.schema,)
    ).fetchone()
    assert owner == (names.owner_role,)
    role = admin.execute(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolconnlimit"
        " FROM pg_roles WHERE rolname = %s",
        (names.login_role,),
    ).fetchone()
    assert role == (True, False, False, False, False, DEFAULT_PLANS["standard"].connection_limit)
    as_owner(server, tenant, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
    with psycopg.connect(login_url(server, tenant, password)) as conn:
        conn.execute("INSERT INTO notes VALUES (1, 'hello')")
        assert conn.execute("SHOW search_path").fetchone() == (names.schema,)
        assert conn.execute("SELECT body FROM notes").fetchone() == ("hello",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE mine (v int)")


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_every_mode_is_reachable_with_its_credentials(
    server: commands.Server, mode: Isolation
) -> None:
    password = passwords.generate()
    tenant = commands.provision(server, request(f"reach-{mode}", mode), password, True)
    with psycopg.connect(login_url(server, tenant, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (tenant.names.login_role,)
        assert conn.execute("SELECT current_database()").fetchone() == (tenant.database,)


def test_reprovisioning_is_idempotent_and_keeps_the_password(server: commands.Server) -> None:
    password = passwords.generate()
    req = request("epsilon")
    first = commands.provision(server, req, password, reset_password=True)
    again = commands.provision(server, req, passwords.generate(), reset_password=False)
    assert again == first
    with psycopg.connect(login_url(server, first, password)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def own_roles(tenant: commands.Provisioned, mode: Isolation) -> list[str]:
    """The tenant's roles that connect to the operator's database."""
    names = tenant.names
    return [names.login_role] if mode is Isolation.SHARED else [names.login_role, names.owner_role]


def connect_entries(admin: psycopg.Connection, roles: list[str]) -> int:
    """How many entries of the operator database's ACL name one of ``roles``."""
    return count(
        admin,
        "SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a, pg_roles r"
        " WHERE d.datname = current_database() AND a.grantee = r.oid AND r.rolname = ANY(%s)",
        roles,
    )


def as_before_the_group(
    admin: psycopg.Connection, server: commands.Server, roles: list[str]
) -> None:
    """Make ``roles`` what a tenant provisioned before ``connect_group`` has: CONNECT
    granted to each, no membership of the group."""
    with server.pool.connection() as conn:
        group = connect_group.role_name(conn.info.user)
    for role, grantor in admin.execute(
        "SELECT m.rolname, a.grantor::regrole::text FROM pg_auth_members a"
        " JOIN pg_roles m ON m.oid = a.member WHERE a.roleid = %s::regrole"
        " AND m.rolname = ANY(%s)",
        (group, roles),
    ).fetchall():
        admin.execute(f'REVOKE "{group}" FROM "{role}" GRANTED BY {grantor}')
        admin.execute(f'GRANT CONNECT ON DATABASE "{admin.info.dbname}" TO "{role}"')


@pytest.mark.parametrize("mode", [Isolation.SCHEMA, Isolation.SHARED], ids=str)
def test_tenants_connect_through_one_group_and_wait_for_no_bootstrap_lock(
    server: commands.Server, operator_url: str, admin: psycopg.Connection, mode: Isolation
) -> None:
    """Tenants connect through the connect group, whose membership rows are their own:
    the database's ACL names none of them, and neither a new tenant nor a provisioned
    one waits for the bootstrap lock. A tenant from before the group (CONNECT of its
    own) waits for it once, to move to the group."""
    password = passwords.generate()
    first = commands.provision(server, request(f"grouped-{mode}", mode), password, True)
    legacy_req = request(f"legacy-{mode}", mode)
    legacy = commands.provision(server, legacy_req, password, True)
    as_before_the_group(admin, server, own_roles(legacy, mode))
    assert connect_entries(admin, own_roles(first, mode)) == 0
    assert connect_entries(admin, own_roles(legacy, mode)) == len(own_roles(legacy, mode))
    other = commands.open_server(servers.database_settings(operator_url, lock_wait=0.5), "t", 2)
    try:
        with locking.hold(server.pool, server.control_schema, locking.BOOTSTRAP):
            new = commands.provision(other, request(f"new-{mode}", mode), password, True)
            with pytest.raises(errors.DatabaseUnavailable, match="lock timeout"):
                commands.provision(other, legacy_req, password, reset_password=False)
        commands.provision(other, legacy_req, password, reset_password=False)
    finally:
        other.close()
    for tenant in (first, new, legacy):
        assert connect_entries(admin, own_roles(tenant, mode)) == 0
        with psycopg.connect(login_url(server, tenant, password)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_domain_conflict_rolls_back_everything(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation
) -> None:
    domain = f"{mode}.taken.example.com"
    commands.provision(server, request(f"holder-{mode}", mode, domain=domain), "pw", True)
    clash = request(f"clash-{mode}", mode, domain=domain)
    with pytest.raises(errors.DomainConflict, match=f"default/holder-{mode}"):
        commands.provision(server, clash, "pw", True)
    names = naming.tenant_names(clash.name, clash.uid)
    assert (
        count(admin, "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", f"{names.schema}%") == 0
    )
    assert count(admin, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", names.schema) == 0
    assert count(admin, "SELECT count(*) FROM pg_database WHERE datname = %s", names.database) == 0
    assert count(admin, "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s", clash.uid) == 0


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_delete_policy_leaves_nothing_behind(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation
) -> None:
    req = request(f"gone-{mode}", mode)
    tenant = commands.provision(server, req, "pw", True)
    space = naming.shared_names(req.namespace, server.shared_schema)
    if mode is Isolation.SHARED:
        with server.sessions.session(space.owner_role, tenant.database) as owner:
            owner.execute(
                f"CREATE TABLE IF NOT EXISTS {space.schema}.notes"
                " (tenant_id uuid NOT NULL, body text)"
            )
            with owner.transaction():
                securing.secure_tables(owner, space, as_owner=True)
        admin.execute(f"INSERT INTO {space.schema}.notes VALUES (%s, 'bye')", (req.uid,))
    commands.deprovision(server, req.uid, req.name, drop=True)
    names = tenant.names
    assert (
        count(admin, "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", f"{names.schema}%") == 0
    )
    assert count(admin, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", names.schema) == 0
    assert count(admin, "SELECT count(*) FROM pg_database WHERE datname = %s", names.database) == 0
    assert count(admin, "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s", req.uid) == 0
    acl = admin.execute("SELECT datacl::text FROM pg_database WHERE datname = current_database()")
    assert names.login_role not in str(acl.fetchone())
    if mode is Isolation.SHARED:
        assert (
            count(admin, f"SELECT count(*) FROM {space.schema}.notes WHERE tenant_id = %s", req.uid)
            == 0
        )
        assert (
            count(
                admin,
                f"SELECT count(*) FROM {space.schema}.tenant_roles WHERE tenant_id = %s",
                req.uid,
            )
            == 0
        )


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_retain_policy_keeps_data_and_disables_login(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation
) -> None:
    req = request(f"kept-{mode}", mode, domain=f"kept-{mode}.example.com")
    password = passwords.generate()
    tenant = commands.provision(server, req, password, True)
    if mode is not Isolation.SHARED:  # the owner logs in only for the operator, until retained
        assert admin.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (tenant.owner_role,)
        ).fetchone() == (True,)
    commands.deprovision(server, req.uid, req.name, drop=False)
    assert admin.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (tenant.names.login_role,)
    ).fetchone() == (False,)
    owner_login = admin.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (tenant.owner_role,)
    ).fetchone()
    assert owner_login == ((True,) if mode is Isolation.SHARED else (False,))
    if mode is Isolation.DATABASE:
        assert (
            count(admin, "SELECT count(*) FROM pg_database WHERE datname = %s", tenant.database)
            == 1
        )
    if mode is Isolation.SCHEMA:
        assert (
            count(admin, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", tenant.schema) == 1
        )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(login_url(server, tenant, password)).close()
    # The retained tenant's domain is free for a new tenant.
    commands.provision(
        server, request(f"heir-{mode}", mode, domain=f"kept-{mode}.example.com"), "pw", True
    )


def test_changing_plan_and_suspending_update_the_role(
    server: commands.Server, admin: psycopg.Connection
) -> None:
    req = request("planner", plan="free", limits=DEFAULT_PLANS["free"])
    tenant = commands.provision(server, req, "pw", True)
    role = tenant.names.login_role
    gold = request(
        "planner",
        uid=req.uid,
        plan="enterprise",
        limits=DEFAULT_PLANS["enterprise"],
        suspended=True,
    )
    commands.provision(server, gold, "pw", False)
    row = admin.execute(
        "SELECT rolconnlimit, rolcanlogin, rolconfig FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    assert row is not None
    assert row[0] == DEFAULT_PLANS["enterprise"].connection_limit
    assert row[1] is False
    assert "statement_timeout=300s" in row[2] and "work_mem=64MB" in row[2]


def test_unreachable_server_is_a_retryable_error() -> None:
    settings = servers.database_settings("postgresql://nobody@127.0.0.1:1/none", pool_min_size=0)
    unreachable = commands.open_server(settings, "unreachable", 1)
    unreachable.pool.timeout = 1
    try:
        with pytest.raises(errors.DatabaseUnavailable) as caught:
            commands.prepare(unreachable)
        assert caught.value.permanent is False
    finally:
        unreachable.close()


@pytest.mark.parametrize(
    ("mode", "drop"),
    [(Isolation.SCHEMA, True), (Isolation.SCHEMA, False), (Isolation.SHARED, True),
     (Isolation.DATABASE, True)],
    ids=["schema-deleted", "schema-retained", "shared-deleted", "database-deleted"],
)  # fmt: skip
def test_a_repair_after_the_tenants_deletion_makes_nothing_again(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation, drop: bool
) -> None:
    """The isolation check found what a deletion dropped: its repair, under the tenant's
    lock, finds the tenant unregistered (or retained) and leaves it so, instead of
    provisioning roles, a schema or a database no one will delete."""
    req = request(f"repaired-{mode}-{str(drop).lower()}", mode)
    tenant = commands.provision(server, req, "pw", True)
    commands.deprovision(server, req.uid, req.name, drop=drop)
    with pytest.raises(errors.TenantGone):
        commands.repair_isolation(server, req, "pw")
    names = tenant.names
    roles = "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s) AND rolcanlogin"
    assert count(admin, roles, names.login_role, names.owner_role) == 0
    schemas = count(admin, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", names.schema)
    assert schemas == (1 if mode is Isolation.SCHEMA and not drop else 0)
    databases = "SELECT count(*) FROM pg_database WHERE datname = %s"
    assert count(admin, databases, names.database) == 0
    live = "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s AND retained_at IS NULL"
    assert count(admin, live, req.uid) == 0
