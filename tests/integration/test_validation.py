"""Integrity validation against a real server: planted faults found, nothing changed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, errors, locking, scoping, validation
from tenantdb.core.migrations import scripts
from tests.integration import test_seeding_support as support

pytestmark = pytest.mark.postgres

PLAN = scripts.load_directory(support.MIGRATIONS)


@pytest.fixture(scope="module")
def server(operator_url: str) -> Iterator[commands.Server]:
    with support.prepared_server(operator_url, "validation_ctl", "validation_shared") as prepared:
        yield prepared


@pytest.fixture(params=[Isolation.SCHEMA, Isolation.DATABASE], ids=str)
def tenant(request: pytest.FixtureRequest, server: commands.Server) -> scoping.TenantLocation:
    location = support.provision(server, f"val-{uuid.uuid4().hex[:6]}", request.param)
    support.migrate(server, location)
    return location


def as_owner(server: commands.Server, location: scoping.TenantLocation, statement: str) -> None:
    """One statement outside any transaction, as the tenant's owner in its schema."""
    with support.tenant_connection(server, location) as conn:
        path = location.search_path(server.shared_schema)
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(path)))
        conn.execute(statement.encode())


def kinds(report: validation.Report) -> set[tuple[validation.Kind, str]]:
    return {(f.kind, f.object.rsplit(".", 1)[-1]) for f in report.findings}


def test_a_tenant_as_its_migrations_left_it_passes(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    report = validation.validate(server, tenant.uid, PLAN)

    assert report.findings == [] and report.passed
    assert report.notes == []


def test_planted_faults_are_each_found_and_nothing_is_changed(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    as_owner(server, tenant, "CREATE TABLE dupes (v int)")
    as_owner(server, tenant, "INSERT INTO dupes VALUES (1), (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        as_owner(server, tenant, "CREATE UNIQUE INDEX CONCURRENTLY dupes_v ON dupes (v)")
    as_owner(
        server,
        tenant,
        "ALTER TABLE leads ADD CONSTRAINT leads_owner FOREIGN KEY (company_id)"
        " REFERENCES companies (id) NOT VALID",
    )
    as_owner(server, tenant, "DROP TABLE inbox_messages")
    as_owner(
        server,
        tenant,
        "INSERT INTO users (id, email, full_name) VALUES (500, 'a@example.com', 'A')",
    )

    report = validation.validate(server, tenant.uid, PLAN)

    assert kinds(report) == {
        (validation.Kind.INVALID_INDEX, "dupes_v"),
        (validation.Kind.NOT_VALID_CONSTRAINT, "leads_owner"),
        (validation.Kind.UNEXPECTED_TABLE, "dupes"),
        (validation.Kind.MISSING_TABLE, "inbox_messages"),
        (validation.Kind.SEQUENCE_BEHIND, "users_id_seq"),
    }
    messages = {f.kind: f.message for f in report.findings}
    assert "VALIDATE CONSTRAINT leads_owner" in messages[validation.Kind.NOT_VALID_CONSTRAINT]
    assert "version 10" in messages[validation.Kind.MISSING_TABLE]
    assert "holds 500" in messages[validation.Kind.SEQUENCE_BEHIND]
    again = validation.validate(server, tenant.uid, PLAN)  # nothing was repaired
    assert kinds(again) == kinds(report)


def test_versions_without_a_known_script_are_findings(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    report = validation.validate(server, tenant.uid, PLAN[:-1])

    assert kinds(report) == {(validation.Kind.UNKNOWN_VERSION, str(PLAN[-1].version))}


@pytest.mark.parametrize("key", ["migration", "backup"])
def test_a_busy_tenant_is_reported_busy_at_once(
    server: commands.Server, tenant: scoping.TenantLocation, key: str
) -> None:
    lock = tenant.uid if key == "migration" else validation.backup_lock(tenant.uid)
    with (
        locking.hold(server.pool, server.control_schema, lock),
        pytest.raises(errors.TenantBusy, match=key),
    ):
        validation.validate(server, tenant.uid, PLAN)


def test_a_shared_tenant_is_checked_against_its_space(server: commands.Server) -> None:
    location = support.provision(server, f"val-{uuid.uuid4().hex[:6]}", Isolation.SHARED)
    support.create_as_owner(server, location, "CREATE TABLE notes (id bigint)")

    report = validation.validate(server, location.uid, PLAN)

    assert (validation.Kind.UNEXPECTED_TABLE, "notes") in kinds(report)
