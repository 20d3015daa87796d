"""The usage survey against a real server: sizes, tables, sessions, and health.

Each tenant writes a known amount of data as itself; the survey must report
it within what PostgreSQL's own accounting allows (page and TOAST overhead,
never less than what was written).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest
from psycopg import conninfo, sql

from tenantdb.api import conditions
from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, scoping, usage
from tenantdb.settings import PlanLimits, UsageSettings
from tests.e2e.support import eventually
from tests.integration.test_seeding_support import create_as_owner

pytestmark = pytest.mark.postgres

ROWS = 2000
PAYLOAD = 1000
"""Bytes of text per row: written with no compression (random hex), so at least ROWS*PAYLOAD
bytes must be reported."""
LIMITED = PlanLimits(connection_limit=5, statement_timeout="60s")


def provision(server: commands.Server, mode: Isolation, namespace: str) -> tuple[str, str]:
    """A new tenant; its UID and its login URL."""
    uid, password = str(uuid.uuid4()), uuid.uuid4().hex
    request = commands.TenantRequest(
        uid=uid,
        name=f"u-{uid[:8]}",
        namespace=namespace,
        isolation=mode,
        plan="usage-test",
        limits=LIMITED,
    )
    made = commands.provision(server, request, password, True)
    url = conninfo.make_conninfo(
        server.url,
        user=made.names.login_role,
        password=password,
        dbname=made.database,
        options="",
    )
    return uid, url


def write_tables(server: commands.Server, uid: str, tables: int) -> None:
    """``tables`` tables made as the tenant's owner, the first holding ROWS rows of
    PAYLOAD incompressible bytes kept out of line (no compression)."""
    with connecting.connection(server.pool) as conn:
        location = scoping.load(conn, server.control_schema, uid)
    assert location is not None
    ddl = "; ".join(
        f"CREATE TABLE t{n} (id bigserial PRIMARY KEY, body text)" for n in range(tables)
    )
    create_as_owner(server, location, ddl)
    fill = (
        "ALTER TABLE t0 ALTER COLUMN body SET STORAGE EXTERNAL;"
        " INSERT INTO t0 (body) SELECT string_agg(md5(random()::text), '')"
        f" FROM generate_series(1, {PAYLOAD // 32}), generate_series(1, {ROWS}) g(n) GROUP BY n"
    )
    create_as_owner(server, location, fill)
    # sizes come from the statistics (pg_class.relpages: read without a lock), which
    # VACUUM brings up to date, as autovacuum does in time
    schema = location.search_path(server.shared_schema)
    with server.sessions.session(location.owner_role, location.database_name) as owner:
        owner.execute(f'VACUUM (ANALYZE) "{schema}".t0')


def swept(
    server: commands.Server, uid: str, survey: usage.Survey | None = None
) -> usage.TenantUsage:
    (found,) = (survey or usage.Survey()).sweep(server, uid=uid)
    return found


@pytest.fixture
def namespace() -> str:
    return f"usage-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("mode", [Isolation.SCHEMA, Isolation.DATABASE])
def test_size_and_tables_match_what_the_tenant_wrote(
    server: commands.Server, namespace: str, mode: Isolation
) -> None:
    uid, _ = provision(server, mode, namespace)
    before = swept(server, uid)
    write_tables(server, uid, 3)

    after = swept(server, uid)

    assert after.tables == 3
    assert before.bytes is not None and after.bytes is not None
    grown = after.bytes - before.bytes
    assert ROWS * PAYLOAD <= grown <= ROWS * PAYLOAD * 1.6 + 512 * 1024
    assert after.connections == 0 and after.invalid_indexes == ()
    assert after.connection_limit == LIMITED.connection_limit


def test_a_shared_tenant_reports_its_space_and_its_tables(
    server: commands.Server, namespace: str
) -> None:
    uid, _ = provision(server, Isolation.SHARED, namespace)

    found = swept(server, uid)

    assert found.bytes is None and found.space_bytes is not None and found.space_bytes >= 0
    assert found.tables == 0  # the space's bookkeeping tables do not count


def test_health_flips_when_connections_near_the_plan_limit(
    server: commands.Server, namespace: str
) -> None:
    uid, url = provision(server, Isolation.SCHEMA, namespace)
    thresholds = UsageSettings(connections_near=0.8)
    assert usage.assess(swept(server, uid), thresholds) == []
    with ExitStack() as held:
        for _ in range(4):  # 4 of 5: at the 80% threshold
            held.enter_context(psycopg.connect(url, autocommit=True))
        crowded = swept(server, uid)
        problems = usage.assess(crowded, thresholds)
        assert crowded.connections == 4
        assert [p.reason for p in problems] == [conditions.Reason.CONNECTIONS_NEAR_LIMIT]
        assert "4 of 5 connections" in problems[0].message
    eventually(lambda: usage.assess(swept(server, uid), thresholds) == [])


def test_a_transaction_left_open_is_reported_with_its_age(
    server: commands.Server, namespace: str
) -> None:
    uid, url = provision(server, Isolation.SCHEMA, namespace)
    thresholds = UsageSettings(transaction_age=0.5)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")  # opens the transaction and leaves it idle

        def reported() -> bool:
            problems = usage.assess(swept(server, uid), thresholds)
            return [p.reason for p in problems] == [conditions.Reason.LONG_TRANSACTION]

        eventually(reported)
        age = swept(server, uid).oldest_transaction
        assert age is not None and age >= 0.5
    eventually(lambda: swept(server, uid).oldest_transaction is None)


@pytest.fixture
def invalid_index_tenant(server: commands.Server, namespace: str) -> Iterator[tuple[str, str]]:
    uid, url = provision(server, Isolation.SCHEMA, namespace)
    plant_invalid_index(server, uid)
    yield uid, url


def plant_invalid_index(server: commands.Server, uid: str) -> None:
    """What a failed ``CREATE UNIQUE INDEX CONCURRENTLY`` leaves: an invalid index."""
    with connecting.connection(server.pool) as conn:
        location = scoping.load(conn, server.control_schema, uid)
    assert location is not None
    create_as_owner(
        server, location, "CREATE TABLE dupes (v int); INSERT INTO dupes VALUES (1), (1)"
    )
    login = scoping.session_login(location)
    with server.sessions.session(*login) as owner:
        owner.execute(
            sql.SQL("SET search_path = {}").format(sql.Identifier(location.search_path("")))
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            owner.execute("CREATE UNIQUE INDEX CONCURRENTLY dupes_v ON dupes (v)")


def test_an_invalid_index_makes_the_tenant_unhealthy(
    server: commands.Server, invalid_index_tenant: tuple[str, str]
) -> None:
    uid, _ = invalid_index_tenant

    found = swept(server, uid)

    assert found.invalid_indexes == ("dupes_v",)
    problems = usage.assess(found, UsageSettings())
    assert [p.reason for p in problems] == [conditions.Reason.INVALID_INDEXES]
    assert "dupes_v" in problems[0].message


def test_a_sweep_costs_the_same_few_queries_for_any_number_of_tenants(
    server: commands.Server, namespace: str
) -> None:
    for _ in range(3):
        provision(server, Isolation.SCHEMA, namespace)
    database_tenants = [provision(server, Isolation.DATABASE, namespace)[0] for _ in range(3)]
    survey = usage.Survey(visits=2)

    first = survey.sweep(server, namespace=namespace)

    assert len(first) == 6 and survey.queries == 2 + 2
    unseen = [u for u in first if u.isolation == "database" and u.tables is None]
    assert len(unseen) == 1  # visited in turn: the third on the next sweep
    second = survey.sweep(server, namespace=namespace)
    assert all(u.tables == 0 for u in second if u.uid in database_tenants)
