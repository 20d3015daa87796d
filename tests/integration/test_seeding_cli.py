"""``tenantdb seeders list``, ``seed`` and ``unseed`` as a user runs them: a real process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.cli.seeding import ProgressBar
from tenantdb.core import commands, scoping
from tenantdb.core import seeding as api
from tenantdb.core.seeding import reports
from tests.integration import test_seeding_support as support

pytestmark = pytest.mark.postgres


def tenantdb(database_url: str, environment: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TENANTDB_ENVIRONMENT": environment,
        "TENANTDB_SEEDERS_DIR": str(support.SEEDERS),
    }
    return subprocess.run(
        [sys.executable, "-m", "tenantdb", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def tenant(server: commands.Server) -> scoping.TenantLocation:
    location = support.provision(server, f"cli-{uuid.uuid4().hex[:8]}", Isolation.SCHEMA)
    support.create_sample_tables(server, location)
    return location


def test_seeders_list_shows_every_seeder_in_run_order(database_url: str) -> None:
    result = tenantdb(database_url, "production", "seeders", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "VERSION", "PROFILE", "KIND", "DEPENDS"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows["settings"] == ["1", "production", "sql"]
    assert rows["demo_history"] == ["1", "development", "python"]
    names = [line.split()[0] for line in lines[1:]]
    assert names.index("sample_users") < names.index("sample_crm") < names.index("demo_history")


def test_the_cli_refuses_development_data_in_production_without_asking(
    database_url: str, server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    reference = f"{tenant.namespace}/{tenant.name}"
    result = tenantdb(
        database_url, "production", "seed", "--tenant", reference, "--profile", "development"
    )
    assert result.returncode == 1
    assert "ForbiddenInProduction" in result.stderr
    assert support.count(server, tenant, "users") == 0
    assert support.count(server, tenant, "roles") == 0
    assert api.tenant_history(server.pool, server.control_schema, tenant.uid) == {}


def test_seed_then_unseed_from_the_command_line(
    database_url: str, server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    reference = f"{tenant.namespace}/{tenant.name}"
    seeded = tenantdb(
        database_url,
        "development",
        "seed",
        "--tenant",
        reference,
        "--profile",
        "development",
        "--option",
        "demo_history.users=4",
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "6 applied" in seeded.stdout
    assert f"seeding {reference}: 6/6 settings applied" in seeded.stderr
    assert support.count(server, tenant, "users") == 8 + 4

    listed = tenantdb(database_url, "development", "seeders", "list", "--tenant", tenant.uid)
    assert listed.returncode == 0, listed.stderr
    assert all(line.split()[5] == "1" for line in listed.stdout.splitlines()[1:])

    again = tenantdb(database_url, "development", "seed", "--tenant", reference, "--quiet")
    assert again.returncode == 0, again.stderr
    assert "3 already seeded; 0 rows" in again.stdout

    removed = tenantdb(database_url, "production", "unseed", "--tenant", tenant.uid)
    assert removed.returncode == 0, removed.stderr
    assert "3 removed (demo_history, sample_crm, sample_users)" in removed.stdout
    assert support.count(server, tenant, "users") == 0
    assert support.count(server, tenant, "roles") == 4


def test_an_unknown_tenant_is_one_line_on_stderr(database_url: str) -> None:
    result = tenantdb(database_url, "development", "seed", "--tenant", "nobody/nothing")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "tenantdb: TenantNotFound: no live tenant is called 'nobody/nothing'"
    )


def test_the_progress_bar_redraws_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar("seeding x/y", out, is_tty=lambda: True)
    bar(reports.ProgressEvent("a", 1, 2, reports.State.APPLIED))
    bar(reports.ProgressEvent("b", 2, 2, reports.State.ROWS, done=1, expected=2))
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("seeding x/y [############------------] 1/2 a applied")
    assert frames[1].startswith("seeding x/y [##################------] 2/2 b 1/2")
    assert out.getvalue().endswith("\n")
