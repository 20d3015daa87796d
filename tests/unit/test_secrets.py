"""Objects holding a password are safe to log: neither repr() nor str() shows it."""

import contextlib

import psycopg_pool
import pytest

from tenantdb import settings
from tenantdb.controllers import credentials, runtime
from tenantdb.core import commands, naming, pools, scoping
from tenantdb.core.seeding import running

PASSWORD = "s3cr3t-Pa55w0rd"
URL = f"postgresql://tenantdb:{PASSWORD}@db.example.com:5432/postgres"


def printed(value: object) -> list[str]:
    return [repr(value), str(value), f"{value}", f"{value!r}"]


def assert_hidden(value: object) -> None:
    for text in printed(value):
        assert PASSWORD not in text, text


def test_the_control_is_a_real_leak() -> None:
    """The check itself fails on an object that does print the password."""
    with pytest.raises(AssertionError):
        assert_hidden({"url": URL})


def test_database_settings_hide_the_url() -> None:
    database = settings.DatabaseSettings(url=URL)
    assert_hidden(database)
    assert_hidden(settings.Settings(database=database))
    assert "pool_max_size=16" in repr(database)  # the rest is still there to read
    assert repr(database.credentials_key) not in repr(database)


def test_credentials_hide_the_password_and_the_uri() -> None:
    creds = credentials.Credentials(
        host="db.example.com", port="5432", database="app", username="t_acme", password=PASSWORD
    )
    assert_hidden(creds)
    assert "username='t_acme'" in repr(creds)
    assert PASSWORD in creds.uri  # what goes into the Secret is whole


KEY = b"k" * 32


def sessions() -> pools.TenantSessions:
    """Tenant sessions on the same URL, with a credentials key: nothing opened."""
    return pools.TenantSessions(URL, KEY)


@pytest.fixture
def pool() -> psycopg_pool.ConnectionPool:
    """A pool that is never opened: no I/O."""
    return psycopg_pool.ConnectionPool(URL, open=False)


def test_server_and_runtime_hide_the_url(pool: psycopg_pool.ConnectionPool) -> None:
    server = commands.Server(
        pool=pool,
        url=URL,
        control_schema=naming.identifier("tenantdb"),
        shared_schema=naming.identifier("tenantdb_shared"),
        sessions=sessions(),
    )
    assert_hidden(pool)
    assert_hidden(server)
    assert repr(KEY) not in repr(server)
    assert_hidden(
        runtime.Runtime(settings=settings.Settings(settings.DatabaseSettings(URL)), server=server)
    )


def test_seeding_run_hides_the_operator_url(pool: psycopg_pool.ConnectionPool) -> None:
    location = scoping.TenantLocation(
        uid="uid-1",
        name="acme",
        namespace="default",
        isolation="schema",
        schema_name="t_acme",
        database_name="postgres",
        owner_role="t_acme_owner",
        login_role="t_acme",
    )
    run = running.Run(
        pool=pool,
        control_schema="tenantdb",
        shared_schema="tenantdb_shared",
        tenant_sessions=sessions(),
        location=location,
        profile="production",
        applied_by="tenantdb",
        progress=None,
        resources=contextlib.ExitStack(),
    )
    assert_hidden(run)
