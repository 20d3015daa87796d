"""The sample application's seeders (``seeders/``) in every isolation mode.

Real PostgreSQL, real tenants provisioned by ``core``; the sample tables
come from ``migrations/`` through the migration engine (``schema`` and
``database`` tenants) or are created as each tenant's owner (every mode,
``shared`` included). The seeders run as each tenant's login role, so
row-level security (``shared``) and privileges apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, scoping
from tenantdb.core import seeding as api
from tests.integration import test_seeding_support as support

pytestmark = pytest.mark.postgres

PRODUCTION_TABLES = ("roles", "plans", "settings")
DEVELOPMENT_TABLES = tuple(t.name for t in support.SAMPLE_TABLES if t.name not in PRODUCTION_TABLES)


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[commands.Server]:
    with support.prepared_server(database_url, "seeding_modes", "seeding_modes_shared") as prepared:
        yield prepared


@pytest.fixture(params=list(Isolation), ids=str)
def tenant(request: pytest.FixtureRequest, server: commands.Server) -> scoping.TenantLocation:
    mode: Isolation = request.param
    location = support.provision(server, f"{mode.value}-{uuid.uuid4().hex[:6]}", mode)
    support.create_sample_tables(server, location)
    return location


def seed(
    server: commands.Server, tenant: scoping.TenantLocation, profile: str, **kwargs: Any
) -> api.SeedReport:
    return api.seed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        tenant.uid,
        profile,
        kwargs.pop("only", ()),
        kwargs.pop("environment", "development"),
        support.SEEDERS,
        **kwargs,
    )


def snapshot(server: commands.Server, tenant: scoping.TenantLocation) -> dict[str, list[Any]]:
    """Every sample table's rows, as the tenant sees them, ordered by id."""
    return {t.name: support.dump(server, tenant, t.name) for t in support.SAMPLE_TABLES}


def forget_history(server: commands.Server, tenant: scoping.TenantLocation) -> None:
    with connecting.connection(server.pool) as conn:
        conn.execute(
            f"DELETE FROM {server.control_schema}.seed_history WHERE tenant_uid = %s",
            (tenant.uid,),
        )


def test_production_profile_writes_production_data_only(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    report = seed(server, tenant, "production", environment="production")
    assert sorted(report.applied) == ["plans", "roles", "settings"]
    data = snapshot(server, tenant)
    assert {t: len(data[t]) for t in PRODUCTION_TABLES} == {"roles": 4, "plans": 4, "settings": 6}
    assert all(data[t] == [] for t in DEVELOPMENT_TABLES)


def test_development_seeders_are_idempotent_and_unseed_leaves_production_data(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    seed(server, tenant, "production")
    production = snapshot(server, tenant)
    first = seed(server, tenant, "development")
    assert first.skipped == ["plans", "roles", "settings"]
    assert first.applied == ["sample_users", "sample_crm", "demo_history"]
    seeded = snapshot(server, tenant)
    assert len(seeded["users"]) == 8 + 20
    assert len(seeded["leads"]) == 60
    assert len(seeded["inbox_messages"]) > 10_000
    assert first.rows == sum(len(seeded[t]) for t in DEVELOPMENT_TABLES)

    # With the history forgotten every seeder runs again: it writes nothing.
    forget_history(server, tenant)
    again = seed(server, tenant, "development")
    assert len(again.applied) == 6
    assert {r.name: r.rows for r in again.results} == dict.fromkeys(again.applied, 0)
    assert snapshot(server, tenant) == seeded

    removed = api.unseed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        tenant.uid,
        support.SEEDERS,
    )
    assert removed.removed == ["demo_history", "sample_crm", "sample_users"]
    assert removed.rows == first.rows
    assert snapshot(server, tenant) == production
    history = api.tenant_history(server.pool, server.control_schema, tenant.uid)
    assert sorted(history) == ["plans", "roles", "settings"]


def test_seed_history_records_every_seeder(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    report = seed(server, tenant, "development", applied_by="test-runner")
    history = api.tenant_history(server.pool, server.control_schema, tenant.uid)
    seeders = {s.name: s for s in api.list_seeders(support.SEEDERS)}
    assert set(history) == set(seeders)
    for name, entry in history.items():
        assert (entry.version, entry.checksum) == (seeders[name].version, seeders[name].checksum)
        assert entry.profile == seeders[name].profile
        assert entry.applied_by == "test-runner"
    assert {r.name: r.rows for r in report.results} == {n: e.rows for n, e in history.items()}


def test_demo_history_options_and_determinism(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    options = {"demo_history.users": "3", "demo_history.days": "30", "demo_history.seed": "11"}
    seed(server, tenant, "development", options=options)
    other = support.provision(server, f"twin-{uuid.uuid4().hex[:6]}", Isolation.SCHEMA)
    support.create_sample_tables(server, other)
    seed(server, other, "development", options=options)

    def messages(location: scoping.TenantLocation) -> list[tuple[Any, ...]]:
        rows = support.dump(server, location, "inbox_messages", order_by="message_id")
        return [(r[-8], r[-4], r[-3], r[-2], r[-1]) for r in rows]  # no ids

    mine = messages(tenant)
    assert mine == messages(other)
    assert 0 < len(mine) < 3 * 30 * 60
    assert {m[1] for m in mine} == {"outbound", "inbound"}
    assert all(m[0].startswith("<11.") for m in mine)


def test_shared_tenants_see_only_their_own_seed_data(server: commands.Server) -> None:
    a = support.provision(server, f"shared-a-{uuid.uuid4().hex[:6]}", Isolation.SHARED)
    b = support.provision(server, f"shared-b-{uuid.uuid4().hex[:6]}", Isolation.SHARED)
    for location in (a, b):
        support.create_sample_tables(server, location)
    seed(server, a, "development")
    assert support.count(server, b, "users") == 0
    seed(server, b, "development")
    assert support.count(server, a, "users") == support.count(server, b, "users") == 28
    api.unseed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        a.uid,
        support.SEEDERS,
    )
    assert support.count(server, a, "users") == 0
    assert support.count(server, b, "users") == 28


@pytest.fixture(params=[Isolation.SCHEMA, Isolation.DATABASE], ids=str)
def migrated(request: pytest.FixtureRequest, server: commands.Server) -> scoping.TenantLocation:
    mode: Isolation = request.param
    location = support.provision(server, f"migrated-{uuid.uuid4().hex[:6]}", mode)
    support.migrate(server, location)
    return location


def test_the_seeders_fit_the_tables_of_the_sample_migrations(
    server: commands.Server, migrated: scoping.TenantLocation
) -> None:
    seed(server, migrated, "production")
    production = snapshot(server, migrated)
    first = seed(server, migrated, "development")
    seeded = snapshot(server, migrated)
    assert first.rows == sum(len(seeded[t]) for t in DEVELOPMENT_TABLES)
    assert len(seeded["inbox_messages"]) > 10_000
    forget_history(server, migrated)
    again = seed(server, migrated, "development")
    assert again.rows == 0
    assert snapshot(server, migrated) == seeded
    api.unseed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        migrated.uid,
        support.SEEDERS,
    )
    assert snapshot(server, migrated) == production
