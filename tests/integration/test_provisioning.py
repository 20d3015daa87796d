"""Schema-mode provisioning against a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import psycopg_pool
import pytest
from psycopg import conninfo

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, errors, naming, passwords
from tenantdb.settings import DEFAULT_PLANS

pytestmark = pytest.mark.postgres
CONTROL = naming.identifier("tenantdb")


@pytest.fixture(scope="module")
def pool(database_url: str) -> Iterator[psycopg_pool.ConnectionPool]:
    pool = connecting.open_pool(database_url, 1, 4, name="tenantdb-tests")
    commands.prepare(pool, CONTROL)
    yield pool
    pool.close()


def request(name: str, **overrides: object) -> commands.TenantRequest:
    fields: dict[str, object] = {
        "uid": str(uuid.uuid4()),
        "name": name,
        "namespace": "default",
        "isolation": Isolation.SCHEMA,
        "plan": "standard",
        "limits": DEFAULT_PLANS["standard"],
        **overrides,
    }
    return commands.TenantRequest(**fields)  # type: ignore[arg-type]


def login_url(database_url: str, role: str, password: str) -> str:
    params = conninfo.conninfo_to_dict(database_url)
    return conninfo.make_conninfo(
        database_url, user=role, password=password, dbname=params["dbname"]
    )


def test_provision_creates_schema_roles_and_a_working_login(
    pool: psycopg_pool.ConnectionPool, admin: psycopg.Connection, database_url: str
) -> None:
    password = passwords.generate()
    tenant = commands.provision(pool, CONTROL, request("alpha"), password, reset_password=True)
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
    with psycopg.connect(login_url(database_url, names.login_role, password)) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'hello')")
        path = conn.execute("SHOW search_path").fetchone()
        assert path == (names.schema,)
        assert conn.execute("SELECT body FROM notes").fetchone() == ("hello",)


def test_a_tenant_cannot_touch_another_tenants_schema(
    pool: psycopg_pool.ConnectionPool, database_url: str
) -> None:
    pw_a, pw_b = passwords.generate(), passwords.generate()
    a = commands.provision(pool, CONTROL, request("gamma"), pw_a, reset_password=True).names
    b = commands.provision(pool, CONTROL, request("delta"), pw_b, reset_password=True).names
    with psycopg.connect(login_url(database_url, b.login_role, pw_b), autocommit=True) as conn:
        conn.execute("CREATE TABLE secrets (v text)")
    with psycopg.connect(login_url(database_url, a.login_role, pw_a), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT * FROM "{b.schema}".secrets')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.hijack (v text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SET ROLE "{a.owner_role}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM tenantdb.tenants")


def test_reprovisioning_is_idempotent_and_keeps_the_password(
    pool: psycopg_pool.ConnectionPool, database_url: str
) -> None:
    password = passwords.generate()
    req = request("epsilon")
    first = commands.provision(pool, CONTROL, req, password, reset_password=True)
    again = commands.provision(pool, CONTROL, req, passwords.generate(), reset_password=False)
    assert again == first
    with psycopg.connect(login_url(database_url, first.names.login_role, password)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_domain_conflict_rolls_back_everything(
    pool: psycopg_pool.ConnectionPool, admin: psycopg.Connection
) -> None:
    commands.provision(pool, CONTROL, request("zeta", domain="zeta.example.com"), "pw", True)
    clash = request("eta", domain="zeta.example.com")
    with pytest.raises(errors.DomainConflict, match="default/zeta"):
        commands.provision(pool, CONTROL, clash, "pw", True)
    names = naming.tenant_names(clash.name, clash.uid)
    assert admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)",
        (names.login_role, names.owner_role),
    ).fetchone() == (0,)
    assert admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (names.schema,)
    ).fetchone() == (0,)
    assert admin.execute(
        "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s", (clash.uid,)
    ).fetchone() == (0,)


def test_delete_policy_leaves_nothing_behind(
    pool: psycopg_pool.ConnectionPool, admin: psycopg.Connection
) -> None:
    req = request("theta")
    names = commands.provision(pool, CONTROL, req, "pw", True).names
    commands.deprovision(pool, CONTROL, req.uid, req.name, drop=True)
    assert admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (f"{names.schema}%",)
    ).fetchone() == (0,)
    assert admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (names.schema,)
    ).fetchone() == (0,)
    acl = admin.execute("SELECT datacl::text FROM pg_database WHERE datname = current_database()")
    assert names.login_role not in str(acl.fetchone())
    assert admin.execute(
        "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s", (req.uid,)
    ).fetchone() == (0,)


def test_retain_policy_keeps_data_and_disables_login(
    pool: psycopg_pool.ConnectionPool, admin: psycopg.Connection, database_url: str
) -> None:
    req = request("iota", domain="iota.example.com")
    password = passwords.generate()
    names = commands.provision(pool, CONTROL, req, password, True).names
    with psycopg.connect(
        login_url(database_url, names.login_role, password), autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE kept (v int)")
    commands.deprovision(pool, CONTROL, req.uid, req.name, drop=False)
    assert admin.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (names.login_role,)
    ).fetchone() == (False,)
    assert admin.execute(f'SELECT count(*) FROM "{names.schema}".kept').fetchone() == (0,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(login_url(database_url, names.login_role, password)).close()
    # The retained tenant's domain is free for a new tenant.
    commands.provision(pool, CONTROL, request("kappa", domain="iota.example.com"), "pw", True)


def test_unreachable_server_is_a_retryable_error() -> None:
    pool = connecting.open_pool("postgresql://nobody@127.0.0.1:1/none", 0, 1, name="unreachable")
    pool.timeout = 1
    try:
        with pytest.raises(errors.DatabaseUnavailable) as caught:
            commands.prepare(pool, CONTROL)
        assert caught.value.permanent is False
    finally:
        pool.close()
