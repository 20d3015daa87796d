"""The seeding runner against a real PostgreSQL server, with purpose-made seeders.

Each test provisions its own ``schema`` tenant and writes its own seeders
directory; the sample application's seeders are covered, in every
isolation mode, by ``test_seeding_modes.py``.
"""

from __future__ import annotations

import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, scoping
from tenantdb.core import seeding as api
from tenantdb.core.seeding import errors, reports
from tests.integration import test_seeding_support as support

pytestmark = pytest.mark.postgres

TABLES = """
CREATE TABLE journal (n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                      seeder text NOT NULL, acting_as text NOT NULL DEFAULT current_user);
CREATE TABLE items (key text PRIMARY KEY, value integer NOT NULL);
"""


def python_seeder(
    name: str,
    *depends_on: str,
    version: int = 1,
    profile: str = "production",
    body: str = "",
    unseed: str = "",
) -> str:
    """A seeder module that writes one journal line, then runs ``body``."""
    lines = [
        f'"""Seeder {name}."""',
        "import sqlalchemy as sa",
        f"NAME = {name!r}",
        f"VERSION = {version}",
        f"PROFILE = {profile!r}",
        f"DEPENDS_ON = {depends_on!r}",
        "def seed(ctx):",
        f"    ctx.connection.execute(sa.text(\"INSERT INTO journal (seeder) VALUES ('{name}')\"))",
        *("    " + line for line in textwrap.dedent(body).strip().splitlines()),
    ]
    if unseed or profile == "development":
        lines += ["def unseed(ctx):", "    pass"]
        lines += ["    " + line for line in textwrap.dedent(unseed).strip().splitlines()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[commands.Server]:
    with support.prepared_server(database_url, "seeding_control", "seeding_shared") as prepared:
        yield prepared


@pytest.fixture
def tenant(server: commands.Server) -> scoping.TenantLocation:
    location = support.provision(server, f"seed-{uuid.uuid4().hex[:8]}", Isolation.SCHEMA)
    support.create_as_owner(server, location, TABLES)
    return location


@pytest.fixture
def seeders(tmp_path: Path) -> Path:
    directory = tmp_path / "seeders"
    directory.mkdir()
    return directory


def seed(
    server: commands.Server,
    tenant: scoping.TenantLocation,
    directory: Path,
    profile: str = "development",
    environment: str = "development",
    only: tuple[str, ...] = (),
    **kwargs: Any,
) -> api.SeedReport:
    return api.seed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        tenant.uid,
        profile,
        only,
        environment,
        directory,
        **kwargs,
    )


def unseed(
    server: commands.Server, tenant: scoping.TenantLocation, directory: Path, *only: str
) -> api.SeedReport:
    return api.unseed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        tenant.uid,
        directory,
        only,
    )


def journal(server: commands.Server, tenant: scoping.TenantLocation) -> list[str]:
    return [row[1] for row in support.dump(server, tenant, "journal", order_by="n")]


def items(server: commands.Server, tenant: scoping.TenantLocation) -> dict[str, int]:
    return {row[0]: row[1] for row in support.dump(server, tenant, "items", order_by="key")}


def recorded(server: commands.Server, tenant: scoping.TenantLocation) -> dict[str, Any]:
    return api.tenant_history(server.pool, server.control_schema, tenant.uid)


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


def test_seeders_run_once_each_in_dependency_order_as_the_login_role(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(seeders, "c.py", python_seeder("c", "b"))
    write(seeders, "b.py", python_seeder("b", "a"))
    write(seeders, "a.py", python_seeder("a"))
    write(seeders, "d.py", python_seeder("d", "a"))
    events: list[reports.ProgressEvent] = []
    report = seed(server, tenant, seeders, progress=events.append)
    assert journal(server, tenant) == ["a", "b", "c", "d"]
    assert report.applied == ["a", "b", "c", "d"]
    assert [(e.seeder, e.position, e.total) for e in events if e.state == "applied"] == [
        ("a", 1, 4),
        ("b", 2, 4),
        ("c", 3, 4),
        ("d", 4, 4),
    ]
    acting = {row[2] for row in support.dump(server, tenant, "journal", order_by="n")}
    assert acting == {tenant.login_role}


def test_a_second_run_changes_nothing(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(
        seeders,
        "a.py",
        python_seeder(
            "a", body="ctx.connection.execute(sa.text(\"INSERT INTO items VALUES ('x', 1)\"))"
        ),
    )
    write(seeders, "b.py", python_seeder("b", "a"))
    first = seed(server, tenant, seeders)
    before = recorded(server, tenant)
    second = seed(server, tenant, seeders)
    assert first.applied == ["a", "b"]
    assert second.applied == []
    assert second.skipped == ["a", "b"]
    assert second.rows == 0
    assert journal(server, tenant) == ["a", "b"]
    assert recorded(server, tenant) == before


def test_a_version_bump_reruns_only_that_seeder(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(seeders, "a.py", python_seeder("a"))
    write(seeders, "b.py", python_seeder("b", "a"))
    write(seeders, "c.py", python_seeder("c", "b"))
    seed(server, tenant, seeders)
    before = recorded(server, tenant)
    write(seeders, "b.py", python_seeder("b", "a", version=2))
    report = seed(server, tenant, seeders)
    after = recorded(server, tenant)
    assert report.applied == ["b"]
    assert report.skipped == ["a", "c"]
    assert journal(server, tenant) == ["a", "b", "c", "b"]
    assert after["b"].version == 2
    assert after["b"].applied_at > before["b"].applied_at
    assert after["a"] == before["a"]
    assert after["c"] == before["c"]


def test_an_edit_without_a_version_bump_is_reported_not_rerun(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(seeders, "a.py", python_seeder("a"))
    seed(server, tenant, seeders)
    write(seeders, "a.py", python_seeder("a") + "# edited\n")
    report = seed(server, tenant, seeders)
    assert report.skipped == ["a"]
    assert report.warnings and "not bumped" in report.warnings[0]
    assert journal(server, tenant) == ["a"]


def test_development_seeders_are_refused_in_production_and_nothing_is_written(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(seeders, "base.py", python_seeder("base"))
    write(seeders, "sample.py", python_seeder("sample", "base", profile="development"))
    with pytest.raises(errors.ForbiddenInProduction) as caught:
        seed(server, tenant, seeders, profile="development", environment="production")
    assert caught.value.reason == "ForbiddenInProduction"
    assert caught.value.seeders == ("sample",)
    assert journal(server, tenant) == []
    assert recorded(server, tenant) == {}
    # The production profile is fine in production, and runs production seeders only.
    report = seed(server, tenant, seeders, profile="production", environment="production")
    assert report.applied == ["base"]
    assert journal(server, tenant) == ["base"]


def test_a_failing_seeder_rolls_back_alone_and_reports_the_database_error(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(
        seeders,
        "a.py",
        python_seeder(
            "a", body="ctx.connection.execute(sa.text(\"INSERT INTO items VALUES ('kept', 1)\"))"
        ),
    )
    failing = """
        ctx.connection.execute(sa.text("INSERT INTO items VALUES ('lost', 2)"))
        ctx.connection.execute(sa.text("INSERT INTO items VALUES ('kept', 3)"))
    """
    write(seeders, "b.py", python_seeder("b", "a", body=failing))
    write(seeders, "c.py", python_seeder("c", "b"))
    with pytest.raises(errors.SeedFailed) as caught:
        seed(server, tenant, seeders)
    failure = caught.value
    assert failure.reason == "SeedFailed"
    assert failure.seeder == "b"
    assert failure.sqlstate == "23505"
    assert failure.permanent
    assert "duplicate key value violates unique constraint" in str(failure)
    assert failure.report.applied == ["a"]
    assert items(server, tenant) == {"kept": 1}
    assert journal(server, tenant) == ["a"]
    assert set(recorded(server, tenant)) == {"a"}


def test_a_seeder_cannot_write_into_another_tenant(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    victim = support.provision(server, f"victim-{uuid.uuid4().hex[:8]}", Isolation.SCHEMA)
    support.create_as_owner(server, victim, TABLES)
    attack = (
        f'stolen = sa.table("items", sa.column("key"), sa.column("value"), schema="{victim.schema_name}")\n'
        'ctx.connection.execute(sa.insert(stolen).values(key="x", value=1))'
    )
    write(seeders, "attack.py", python_seeder("attack", body=attack))
    with pytest.raises(errors.SeedFailed) as caught:
        seed(server, tenant, seeders)
    assert caught.value.sqlstate == "42501"  # insufficient_privilege
    assert items(server, victim) == {}


def test_a_seeder_that_commits_by_itself_is_refused(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(seeders, "rogue.py", python_seeder("rogue", body="ctx.connection.commit()"))
    with pytest.raises(errors.SeedFailed, match="must never do that"):
        seed(server, tenant, seeders)
    assert recorded(server, tenant) == {}


def test_rows_are_counted_whatever_way_they_were_written(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    body = """
        ctx.connection.execute(sa.text("INSERT INTO items VALUES ('a', 1), ('b', 2)"))
        ctx.connection.execute(sa.text("UPDATE items SET value = 3 WHERE key = 'a'"))
        table = sa.table("items", sa.column("key"), sa.column("value"))
        ctx.bulk_insert(table, ["key", "value"], ((f"k{i}", i) for i in range(500)))
    """
    write(seeders, "bulk.py", python_seeder("bulk", body=body))
    write(
        seeders,
        "more.sql",
        "-- name: more\n-- version: 1\n-- profile: production\n-- depends: bulk\n"
        "INSERT INTO items VALUES ('sql1', 1), ('sql2', 2);\nDELETE FROM items WHERE key = 'b';\n",
    )
    report = seed(server, tenant, seeders)
    rows = {r.name: r.rows for r in report.results}
    assert rows == {"bulk": 1 + 2 + 1 + 500, "more": 3}
    assert {name: e.rows for name, e in recorded(server, tenant).items()} == rows
    assert len(items(server, tenant)) == 2 + 500 + 2 - 1


def test_bulk_insert_can_skip_rows_that_exist(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    body = """
        table = sa.table("items", sa.column("key"), sa.column("value"))
        ctx.bulk_insert(table, ["key", "value"], [("a", 1), ("b", 2)])
        ctx.bulk_insert(table, ["key", "value"], [("b", 20), ("c", 3)], skip_existing=True)
    """
    write(seeders, "bulk.py", python_seeder("bulk", body=body))
    report = seed(server, tenant, seeders)
    assert items(server, tenant) == {"a": 1, "b": 2, "c": 3}
    assert report.rows == 1 + 3


def test_unseed_removes_development_data_and_keeps_production_data(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(
        seeders,
        "base.py",
        python_seeder(
            "base", body="ctx.connection.execute(sa.text(\"INSERT INTO items VALUES ('base', 1)\"))"
        ),
    )
    write(
        seeders,
        "sample.sql",
        "-- name: sample\n-- version: 1\n-- profile: development\n-- depends: base\n"
        "INSERT INTO items VALUES ('sample', 2);\n-- unseed\nDELETE FROM items WHERE key = 'sample';\n",
    )
    write(
        seeders,
        "demo.py",
        python_seeder(
            "demo",
            "sample",
            profile="development",
            body="ctx.connection.execute(sa.text(\"INSERT INTO items VALUES ('demo', 3)\"))",
            unseed="ctx.connection.execute(sa.text(\"DELETE FROM items WHERE key = 'demo'\"))",
        ),
    )
    seed(server, tenant, seeders)
    support.create_as_owner(server, tenant, "SELECT 1")  # the app's own rows stay too:
    with support.tenant_connection(server, tenant) as conn:
        conn.execute(f"INSERT INTO \"{tenant.schema_name}\".items VALUES ('app', 9)")
    report = unseed(server, tenant, seeders)
    assert report.removed == ["demo", "sample"]
    assert report.rows == 2
    assert items(server, tenant) == {"app": 9, "base": 1}
    assert set(recorded(server, tenant)) == {"base"}
    assert unseed(server, tenant, seeders).removed == []
    with pytest.raises(errors.InvalidSelection):
        unseed(server, tenant, seeders, "base")
    # Seeding again brings the development data back.
    assert seed(server, tenant, seeders).applied == ["sample", "demo"]


def test_two_runs_at_once_on_one_tenant_apply_each_seeder_once(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(
        seeders,
        "slow.py",
        python_seeder("slow", body='ctx.connection.execute(sa.text("SELECT pg_sleep(0.3)"))'),
    )
    outcomes: list[api.SeedReport] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(seed(server, tenant, seeders)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r.applied) for r in outcomes) == [0, 1]
    assert journal(server, tenant) == ["slow"]


def test_an_unknown_tenant_is_reported(server: commands.Server, seeders: Path) -> None:
    write(seeders, "a.py", python_seeder("a"))
    ghost = scoping.TenantLocation(str(uuid.uuid4()), "ghost", "x", "schema", "s", "d", "o", "l")
    with pytest.raises(errors.TenantNotFound):
        seed(server, ghost, seeders)


def test_tenants_are_found_by_uid_or_name(
    server: commands.Server, tenant: scoping.TenantLocation
) -> None:
    assert api.find_tenant(server.pool, server.control_schema, tenant.uid) == tenant
    assert api.find_tenant(server.pool, server.control_schema, f"seeding/{tenant.name}") == tenant
    assert api.find_tenant(server.pool, server.control_schema, tenant.name) == tenant
    with pytest.raises(errors.TenantNotFound):
        api.find_tenant(server.pool, server.control_schema, "other/" + tenant.name)


def test_a_deleted_tenant_takes_its_history_along(
    server: commands.Server, tenant: scoping.TenantLocation, seeders: Path
) -> None:
    write(seeders, "a.py", python_seeder("a"))
    seed(server, tenant, seeders)
    commands.deprovision(server, tenant.uid, tenant.name, drop=True)
    with connecting.connection(server.pool) as conn:
        left = conn.execute(
            f"SELECT count(*) FROM {server.control_schema}.seed_history WHERE tenant_uid = %s",
            (tenant.uid,),
        ).fetchone()
    assert left == (0,)
