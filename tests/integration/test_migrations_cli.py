"""`tenantdb migrate` and `tenantdb migrations render` on the sample application's scripts,
against a real PostgreSQL server, with schema, database and shared tenants side by side."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from tenantdb import cli
from tenantdb.api import migrations as api
from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, scoping
from tenantdb.core.migrations import markers, scripts
from tests.integration.test_migrations_engine import in_tenant, provision, scalar

pytestmark = pytest.mark.postgres
SAMPLE = Path(__file__).resolve().parents[2] / "migrations"
TABLES = {"users", "team_members", "companies", "domains", "email_accounts", "leads"}


@pytest.fixture
def namespace(operator_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", operator_url)
    return f"cli-{uuid.uuid4().hex[:8]}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def tables(database_url: str, tenant: scoping.TenantLocation) -> set[str]:
    with in_tenant(database_url, tenant) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
            (tenant.search_path(""), markers.MARKER_TABLE),
        ).fetchall()
    return {r[0] for r in rows}


def test_sample_migrations_up_status_and_down_on_every_isolation_mode(
    server: commands.Server, namespace: str, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    schema_a = provision(server, Isolation.SCHEMA, namespace)
    schema_b = provision(server, Isolation.SCHEMA, namespace)
    database = provision(server, Isolation.DATABASE, namespace)
    provision(server, Isolation.SHARED, namespace)  # tenant-scope scripts skip shared tenants
    code, out = run(capsys, "migrate", "up", str(SAMPLE), "--namespace", namespace, "--quiet")
    assert code == 0, out
    latest = scripts.load_directory(SAMPLE)[-1]
    assert f"{latest.name}: 3 applied" in out
    for tenant in (schema_a, schema_b, database):
        assert tables(database_url, tenant) >= TABLES
        with in_tenant(database_url, tenant) as conn:
            valid = conn.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                (f'"{tenant.search_path("")}".inbox_messages_user_recent',),
            ).fetchone()
        assert valid == (True,)

    code, out = run(capsys, "migrate", "status", "--namespace", namespace)
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAMESPACE", "VERSION", "SCOPE", "APPLIED", "FAILED"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [namespace, str(s.version), "tenant", "3"] for s in scripts.load_directory(SAMPLE)
    ]
    code, out = run(
        capsys, "migrate", "status", "--namespace", namespace, "--tenant", schema_a.name
    )
    assert out.count(" applied ") == len(lines) - 1 and "cli:" in out

    code, out = run(capsys, "migrate", "up", str(SAMPLE), "--namespace", namespace, "--quiet")
    assert code == 0 and f"{latest.name}: 3 alreadyApplied" in out

    code, out = run(
        capsys, "migrate", "down", str(SAMPLE), "--to", "0", "--namespace", namespace, "--quiet"
    )
    assert code == 0, out
    for tenant in (schema_a, schema_b, database):
        assert tables(database_url, tenant) == set()


def test_up_stops_at_a_failing_script_and_down_refuses_to_skip_versions(
    server: commands.Server,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    database_url: str,
) -> None:
    tenant = provision(server, Isolation.SCHEMA, namespace)
    for name in ("0001_reference_data.sql", "0002_users.sql"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    (tmp_path / "0003_broken.sql").write_text("-- migrate:up\nALTER TABLE nowhere ADD x int;\n")
    (tmp_path / "0004_later.sql").write_text("-- migrate:up\nCREATE TABLE later (id int);\n")
    code, out = run(capsys, "migrate", "up", str(tmp_path), "--namespace", namespace, "--quiet")
    assert code == 1
    assert "0003_broken: 1 failed" in out and 'relation "nowhere" does not exist' in out
    assert "0004_later" not in out
    assert tables(database_url, tenant) == {"roles", "plans", "settings", "users"}

    code, out = run(
        capsys, "migrate", "down", str(tmp_path), "--to", "1", "--namespace", namespace,
        "--tenant", tenant.name, "--quiet",
    )  # fmt: skip
    assert code == 0, out
    assert tables(database_url, tenant) == {"roles", "plans", "settings"}


def test_edited_applied_script_is_drift_until_repaired(
    server: commands.Server,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    admin: psycopg.Connection,
) -> None:
    tenant = provision(server, Isolation.SCHEMA, namespace)
    script = tmp_path / "0001_notes.sql"
    script.write_text("-- migrate:up\nCREATE TABLE notes (id int);\n")
    assert run(capsys, "migrate", "up", str(tmp_path), "--namespace", namespace)[0] == 0
    script.write_text("-- migrate:up\nCREATE TABLE notes (id bigint);\n")
    code, out = run(capsys, "migrate", "up", str(tmp_path), "--namespace", namespace, "--quiet")
    assert code == 1 and f"{tenant.name}: drift" in out
    assert (
        scalar(
            admin,
            "SELECT data_type FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'notes'",
            tenant.schema_name,
        )
        == "integer"
    )  # never re-applied
    code, out = run(capsys, "migrate", "repair", str(tmp_path), "--namespace", namespace)
    assert code == 0 and "accepted on 1 tenant(s)" in out
    code, out = run(capsys, "migrate", "up", str(tmp_path), "--namespace", namespace, "--quiet")
    assert code == 0 and "1 alreadyApplied" in out


def test_render_writes_manifests_and_a_kustomization(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = run(capsys, "migrations", "render", str(SAMPLE), "--namespace", "shop")
    assert code == 0
    docs = list(yaml.safe_load_all(out))
    loaded = scripts.load_directory(SAMPLE)
    assert [d["spec"]["version"] for d in docs] == [s.version for s in loaded]
    for doc, script in zip(docs, loaded, strict=True):
        spec = api.MigrationSpec.model_validate(doc["spec"])
        assert scripts.checksum(spec.up) == script.checksum
        assert doc["metadata"]["namespace"] == "shop"
    code, out = run(capsys, "migrations", "render", str(SAMPLE), "--out", str(tmp_path / "k"))
    kustomization = yaml.safe_load((tmp_path / "k" / "kustomization.yaml").read_text())
    assert len(kustomization["resources"]) == len(loaded)
    assert all((tmp_path / "k" / name).exists() for name in kustomization["resources"])
