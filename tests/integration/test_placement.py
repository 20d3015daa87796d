"""The placement directory on a real server: capacity holds when tenants are placed at
once, the fewest-tenants rule spreads them, and a placed tenant never moves."""

from __future__ import annotations

import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenantdb.core import commands, connecting, errors, placement

pytestmark = pytest.mark.postgres


def place(
    server: commands.Server, tenant: placement.Tenant, candidates: list[placement.Candidate]
) -> str:
    with connecting.connection(server.pool) as conn:
        return placement.place(conn, server.control_schema, tenant, candidates, "the test's")


def new_tenant(namespace: str) -> placement.Tenant:
    return placement.Tenant(str(uuid.uuid4()), namespace, f"t-{uuid.uuid4().hex[:6]}", "schema")


def test_capacity_holds_when_tenants_are_placed_at_once(server: commands.Server) -> None:
    namespace = f"placing-{uuid.uuid4().hex[:6]}"
    east, west = f"east-{namespace}", f"west-{namespace}"
    candidates = [placement.Candidate(east, tenants=3), placement.Candidate(west, tenants=2)]
    tenants = [new_tenant(namespace) for _ in range(8)]

    def attempt(tenant: placement.Tenant) -> str:
        try:
            return place(server, tenant, candidates)
        except errors.TenantDBError as exc:
            return exc.reason

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, tenants))
    assert sorted(outcomes) == sorted([east] * 3 + [west] * 2 + ["ServerFull"] * 3)
    with connecting.connection(server.pool) as conn:
        counted = placement.counts(conn, server.control_schema, [east, west])
        assert counted == {east: {"schema": 3}, west: {"schema": 2}}
        assert placement.servers_of(conn, server.control_schema, namespace) == {
            "default",
            east,
            west,
        }


def test_a_placed_tenant_keeps_its_server(server: commands.Server) -> None:
    tenant = new_tenant(f"keeping-{uuid.uuid4().hex[:6]}")
    first = place(server, tenant, [placement.Candidate("north")])
    assert place(server, tenant, [placement.Candidate("south", tenants=10)]) == first == "north"
    with connecting.connection(server.pool) as conn:
        placement.forget(conn, server.control_schema, tenant.uid)
        assert placement.located(conn, server.control_schema, tenant.uid) is None


def test_no_candidate_is_refused_with_why(server: commands.Server) -> None:
    with pytest.raises(placement.NoServer, match="the test's"):
        place(server, new_tenant("nowhere"), [])


def test_a_tenant_naming_no_server_is_placed_on_the_default_once(server: commands.Server) -> None:
    namespace = f"plain-{uuid.uuid4().hex[:6]}"
    tenant = new_tenant(namespace)
    with connecting.connection(server.pool) as conn:
        assert placement.on_default(conn, server.control_schema, tenant) == placement.DEFAULT
        assert placement.on_default(conn, server.control_schema, tenant) == placement.DEFAULT
        assert placement.located(conn, server.control_schema, tenant.uid) == placement.DEFAULT
        rows = conn.execute(
            "SELECT count(*) FROM tenantdb.placements WHERE namespace = %s", (namespace,)
        ).fetchone()
        assert rows == (1,)


def test_a_domain_is_unique_across_servers_and_follows_changes(server: commands.Server) -> None:
    namespace = f"domains-{uuid.uuid4().hex[:6]}"
    domain = f"{namespace}.example.com"
    first = dataclasses.replace(new_tenant(namespace), domain=domain)
    second = dataclasses.replace(new_tenant(namespace), domain=domain)
    with connecting.connection(server.pool) as conn:
        assert placement.on_default(conn, server.control_schema, first) == placement.DEFAULT
    with pytest.raises(errors.DomainConflict, match=first.name):
        place(server, second, [placement.Candidate("elsewhere")])  # on another server
    with connecting.connection(server.pool) as conn:
        assert placement.located(conn, server.control_schema, second.uid) is None
        moved = dataclasses.replace(first, domain=f"new.{domain}")
        placement.on_default(conn, server.control_schema, moved)  # its domain changes
    assert place(server, second, [placement.Candidate("elsewhere")]) == "elsewhere"
    with pytest.raises(errors.DomainConflict), connecting.connection(server.pool) as conn:
        placement.claim_domain(
            conn, server.control_schema, dataclasses.replace(moved, domain=domain)
        )
