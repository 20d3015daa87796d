"""`tenantdb backup create | list | verify | restore` against a real PostgreSQL server and
a storage directory: the operator's engine without the operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantdb import cli
from tenantdb.api.tenants import Isolation
from tenantdb.core import commands
from tests.integration import backup_support as support

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _environment(operator_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", operator_url)
    monkeypatch.delenv("TENANTDB_BACKUP_STORAGE", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The exit code and everything printed (stdout, then stderr)."""
    code = cli.main(list(argv))
    printed = capsys.readouterr()
    return code, printed.out + printed.err


def test_create_list_verify_and_restore(
    server: commands.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, password = support.provision(server, "clisrc", Isolation.SCHEMA)
    with support.login(server, source, password) as app:
        app.execute("SELECT 1")
    with server.sessions.session(source.owner_role, source.database_name) as owner:
        owner.execute(
            f'CREATE TABLE "{source.schema_name}".items (id serial PRIMARY KEY, name text)'
        )
        owner.execute(
            f'INSERT INTO "{source.schema_name}".items (name)'
            " SELECT 'item ' || g FROM generate_series(1, 25) g"
        )
    storage = f"file://{tmp_path}"
    code, out = run(
        capsys,
        "backup", "create", "--storage", storage,
        "--namespace", source.namespace, "--tenant", source.name,
    )  # fmt: skip
    assert code == 0, out
    location = out.split(":", 1)[0]
    assert location.startswith(f"{source.namespace}/{source.name}/") and "25 row(s)" in out

    code, out = run(capsys, "backup", "list", "--storage", storage, "--namespace", source.namespace)
    assert code == 0 and location in out and f"{source.namespace}/{source.name}" in out

    code, out = run(capsys, "backup", "verify", "--storage", storage, location)
    assert code == 0 and "ok" in out, out

    target, target_password = support.provision(server, "clidst", Isolation.SCHEMA)
    code, out = run(
        capsys,
        "backup", "restore", "--storage", storage, location,
        "--namespace", target.namespace, "--tenant", target.name,
    )  # fmt: skip
    assert code == 0 and "restored 25 row(s)" in out, out
    with (
        support.login(server, source, password) as old,
        support.login(server, target, target_password) as new,
    ):
        assert support.rows(new, "items") == support.rows(old, "items")


def test_a_tampered_archive_fails_verification_before_anything_is_created(
    server: commands.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, _ = support.provision(server, "clitamper", Isolation.SCHEMA)
    with server.sessions.session(source.owner_role, source.database_name) as owner:
        owner.execute(
            f'CREATE TABLE "{source.schema_name}".t AS SELECT g AS n FROM generate_series(1, 100) g'
        )
    storage = f"file://{tmp_path}"
    code, out = run(
        capsys,
        "backup", "create", "--storage", storage, "--compression", "none",
        "--namespace", source.namespace, "--tenant", source.name,
    )  # fmt: skip
    assert code == 0, out
    location = out.split(":", 1)[0]
    data = tmp_path / location / "data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    roles_before = _scratch_roles(server)
    code, out = run(capsys, "backup", "verify", "--storage", storage, location)
    assert code != 0
    assert "sha256" in out or "corrupt" in out.lower(), out
    assert _scratch_roles(server) == roles_before  # no scratch tenant was made


def _scratch_roles(server: commands.Server) -> int:
    from tenantdb.core import connecting  # noqa: PLC0415

    with connecting.connection(server.pool) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 't_verify_%'"
        ).fetchone()
    assert row is not None
    return int(row[0])
