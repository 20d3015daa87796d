"""`tenantdb tenants health`, `tenantdb validate` and `tenantdb reset` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import ExitStack

import psycopg
import pytest
from psycopg import conninfo

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, scoping
from tests.integration import test_seeding_support as support

pytestmark = pytest.mark.postgres


def run(server: commands.Server, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantdb", *args],
        env={**os.environ, "DATABASE_URL": server.url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tenant(server: commands.Server) -> scoping.TenantLocation:
    location = support.provision(server, f"ops-{uuid.uuid4().hex[:6]}", Isolation.SCHEMA)
    support.migrate(server, location)
    return location


def login_url(server: commands.Server, location: scoping.TenantLocation) -> str:
    return conninfo.make_conninfo(
        server.url,
        user=location.login_role,
        password="unused-password",  # what support.provision gives every login role
        dbname=location.database_name,
        options="",
    )


def test_health_shows_usage_and_says_when_statement_statistics_are_missing(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    with ExitStack() as held:
        for _ in range(2):
            held.enter_context(psycopg.connect(login_url(server, tenant), autocommit=True))
        result = run(server, "tenants", "health", "--tenant", tenant.uid)

    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:6] == ["NAMESPACE", "NAME", "ISOLATION", "PLAN", "SIZE", "TABLES"]
    cells = row.split()
    assert cells[:4] == [tenant.namespace, tenant.name, "schema", "standard"]
    assert cells[5] == "12" and cells[6] == "2/20" and row.endswith("healthy")
    assert "pg_stat_statements is not available" in result.stdout
    assert server.url.split("@")[0] not in result.stdout + result.stderr


def test_validate_lists_findings_and_fails(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    assert (
        run(
            server, "validate", "--tenant", tenant.uid, "--migrations", str(support.MIGRATIONS)
        ).returncode
        == 0
    )
    support.create_as_owner(
        server,
        tenant,
        "ALTER TABLE leads ADD CONSTRAINT leads_company FOREIGN KEY (company_id)"
        " REFERENCES companies (id) NOT VALID",
    )

    result = run(
        server, "validate", "--tenant", tenant.uid, "--migrations", str(support.MIGRATIONS)
    )

    assert result.returncode == 1
    assert "NotValidConstraint" in result.stdout and "leads_company" in result.stdout


def test_reset_is_refused_without_confirmation_and_in_production_without_a_backup(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    where = ["--tenant", tenant.uid, "--migrations", str(support.MIGRATIONS)]
    from tests.integration.test_reset import seed  # noqa: PLC0415

    seed(server, tenant, "production")  # the seeders it has, run again after the reset
    support.create_as_owner(
        server, tenant, "INSERT INTO users (email, full_name) VALUES ('a@b.c', 'A')"
    )

    unconfirmed = run(server, "reset", *where, TENANTDB_ENVIRONMENT="development")
    unbacked = run(
        server, "reset", *where, "--confirm", tenant.name, TENANTDB_ENVIRONMENT="production"
    )

    assert unconfirmed.returncode != 0 and "confirm with the tenant's name" in unconfirmed.stderr
    assert unbacked.returncode != 0 and "without a Backup" in unbacked.stderr
    assert support.count(server, tenant, "users") == 1

    done = run(
        server, "reset", *where, "--confirm", tenant.name, TENANTDB_ENVIRONMENT="development"
    )

    assert done.returncode == 0, done.stderr
    assert "emptied 12 tables" in done.stdout
    assert support.count(server, tenant, "users") == 0
    assert support.count(server, tenant, "plans") == 4  # production seeders ran again
