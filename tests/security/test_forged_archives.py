"""Forged archives: what someone who can write to a Backup's bucket can make a restore do.

A namespace user who stores its Backups in a bucket of its own can replace
an archive with anything: a payload of any SQL, a manifest saying anything.
The restore runs every statement on a session whose session user is the
*target's* owner role (``core/pools.py``), so the worst a forged archive
can do is what that tenant's own Migrations could; the manifest is checked
against the Backup object (namespace, tenant UID) and the namespace's
Migrations before anything is created.

A ``pg_restore`` that only echoes its input stands in for the real one (the
payload *is* the script pg_restore would print: its TOC entries are
arbitrary text), so the forged SQL goes through the real lexer, the real
owner session and the real transaction.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, errors, registry, securing, tenancy
from tenantdb.core.backups import archive, framing, manifest, storage, taking
from tenantdb.core.backups import tools as tools_
from tests.integration import backup_support as support
from tests.security.conftest import SHARED_TABLES

pytestmark = pytest.mark.postgres

ATTACKER = "forge-a"
VICTIM = "forge-b"
LOCATION = f"{ATTACKER}/src/20260101T000000Z-{uuid.UUID(int=1)}"


@dataclasses.dataclass(frozen=True)
class Forge:
    """A victim tenant in another namespace, and the means to restore forged archives."""

    server: commands.Server
    tools: Path
    victim: registry.TenantRecord
    victim_password: str
    marker: Path

    def archive(self, store: storage.Storage, forged: manifest.Manifest, payload: bytes) -> None:
        with archive.ArchiveWriter(store, LOCATION, compression="none") as sink:
            sink.write(payload)
            sink.finish(forged)

    def restore(
        self, store: storage.Storage, target: registry.TenantRecord, origin: taking.Origin
    ) -> manifest.Manifest:
        return taking.restore(
            self.server, store, LOCATION, None, target.uid, self.tools, {}, origin
        )


@pytest.fixture(scope="module")
def forge(server: commands.Server, tmp_path_factory: pytest.TempPathFactory) -> Forge:
    """An echoing pg_restore beside the real pg_dump; a victim tenant with a row."""
    directory = tmp_path_factory.mktemp("forged-tools")
    with connecting.connection(server.pool) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    real = tools_.find(int(row[0]))
    (directory / "pg_dump").symlink_to(real.pg_dump)
    echo = directory / "pg_restore"
    echo.write_text(
        f'#!/bin/sh\nif [ "$1" = --version ]; then exec "{real.pg_restore}" --version; fi\n'
        "exec cat\n"
    )
    echo.chmod(0o755)
    victim, password = support.provision(server, "vic", Isolation.SCHEMA, VICTIM)
    with server.sessions.session(victim.owner_role, victim.database_name) as conn:
        conn.execute(f'CREATE TABLE "{victim.schema_name}".notes (id int, body text)')
    with support.login(server, victim, password) as app:
        app.execute("INSERT INTO notes VALUES (1, 'secret of the victim')")
    marker = tmp_path_factory.mktemp("forged") / "pwned"
    return Forge(server, directory, victim, password, marker)


def _forged(target: registry.TenantRecord, **changes: object) -> manifest.Manifest:
    """A manifest as a forger writes it: of the attacker's namespace, for ``target``'s mode."""
    made = manifest.Manifest(
        tenant="src",
        namespace=ATTACKER,
        tenant_uid=str(uuid.UUID(int=2)),
        isolation=target.isolation,
        payload="pg_dump-custom" if target.isolation != "shared" else framing.PAYLOAD,
        server_version=0,
        tool_version="forged",
        started_at="2026-01-01T00:00:00Z",
        completed_at="2026-01-01T00:00:01Z",
        schema_version=None,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def _origin(forged: manifest.Manifest) -> taking.Origin:
    return taking.Origin(forged.namespace, forged.tenant_uid)


@pytest.fixture
def target(forge: Forge) -> registry.TenantRecord:
    record, _ = support.provision(forge.server, "target", Isolation.SCHEMA, ATTACKER)
    return record


@pytest.fixture
def store(tmp_path: Path) -> storage.Storage:
    return storage.VolumeStorage(tmp_path / "bucket")


def _names(forge: Forge, target: registry.TenantRecord) -> dict[str, str]:
    with connecting.connection(forge.server.pool) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return {
        "schema": str(target.schema_name),
        "owner": target.owner_role,
        "login": target.login_role,
        "operator": str(row[0]),
        "victim_schema": str(forge.victim.schema_name),
        "victim_owner": forge.victim.owner_role,
        "victim_login": forge.victim.login_role,
        "marker": str(forge.marker),
    }


REFUSED = {
    "superuser": "ALTER ROLE {owner} SUPERUSER;",
    "createrole-bypassrls": "ALTER ROLE {owner} CREATEROLE BYPASSRLS;",
    "set-role-operator": "SET ROLE {operator};",
    "set-config-role": "SELECT pg_catalog.set_config('role', '{operator}', false);",
    "session-authorization": "SET SESSION AUTHORIZATION postgres;",
    "copy-to-program": "COPY (SELECT 1) TO PROGRAM 'touch {marker}';",
    "read-server-file": "SELECT pg_catalog.pg_read_file('postgresql.conf');",
    "create-in-victim-schema": 'CREATE TABLE "{victim_schema}".planted (n int);',
    "create-in-public": "CREATE TABLE public.planted (n int);",
    "create-schema": "CREATE SCHEMA planted;",
    "grant-victim-schema": 'GRANT USAGE ON SCHEMA "{victim_schema}" TO {owner};',
    "grant-victim-membership": "GRANT {victim_login} TO {owner};",
    "victim-default-privileges": (
        'ALTER DEFAULT PRIVILEGES FOR ROLE {victim_owner} IN SCHEMA "{victim_schema}"'
        " GRANT SELECT ON TABLES TO {login};"
    ),
    "drop-victim-schema": 'DROP SCHEMA "{victim_schema}" CASCADE;',
    "preload-library": "ALTER ROLE {owner} SET session_preload_libraries = 'auto_explain';",
    "untrusted-extension": "DO $$ BEGIN EXECUTE 'CREATE EXTENSION file_fdw'; END $$;",
    "down-then-up": "SET ROLE {login};\nRESET ROLE;\nALTER ROLE {owner} SUPERUSER;",
    "meta-command": "\\! touch {marker}",
    "meta-connect": "\\connect postgres",
}


@pytest.mark.parametrize("attack", sorted(REFUSED))
def test_a_forged_dump_statement_above_the_target_owner_is_refused_and_nothing_stays(
    forge: Forge,
    target: registry.TenantRecord,
    store: storage.Storage,
    admin: psycopg.Connection,
    attack: str,
) -> None:
    names = _names(forge, target)
    script = (
        f'CREATE TABLE "{names["schema"]}".before (n int);\n'
        + REFUSED[attack].format(**names)
        + "\n"
        + f'CREATE TABLE "{names["schema"]}".after (n int);\n'
    )
    forged = _forged(target)
    forge.archive(store, forged, script.encode())
    with pytest.raises(errors.TenantDBError, match=r"permission denied|must be owner|meta-command"):
        forge.restore(store, target, _origin(forged))
    assert not forge.marker.exists()
    attributes = admin.execute(
        "SELECT rolsuper, rolcreaterole, rolbypassrls, rolconfig FROM pg_roles WHERE rolname = %s",
        (target.owner_role,),
    ).fetchone()
    assert attributes is not None and attributes[:3] == (False, False, False)
    assert "session_preload_libraries" not in str(attributes[3])
    assert not admin.execute(
        "SELECT 1 FROM pg_class WHERE relname IN ('before', 'after', 'planted')"
        " AND relnamespace::regnamespace::text IN (%s, %s, 'public')",
        (names["schema"], names["victim_schema"]),
    ).fetchall(), "the restore's one transaction left something behind"
    assert not admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'planted'").fetchall()
    assert not admin.execute(
        "SELECT 1 FROM pg_auth_members WHERE member = %s::regrole AND roleid = %s::regrole",
        (target.owner_role, forge.victim.login_role),
    ).fetchall()
    assert not admin.execute("SELECT 1 FROM pg_extension WHERE extname = 'file_fdw'").fetchall()
    with support.login(forge.server, forge.victim, forge.victim_password) as victim:
        assert victim.execute("SELECT body FROM notes").fetchall() == [("secret of the victim",)]


def test_the_untrusted_extension_attack_is_meaningful(admin: psycopg.Connection) -> None:
    """Control for ``untrusted-extension``: the server has file_fdw, so only the owner's
    missing privilege stops it."""
    assert admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'file_fdw'").fetchall()


def test_forged_definer_functions_grants_and_default_privileges_are_the_target_owners_alone(
    forge: Forge, target: registry.TenantRecord, store: storage.Storage, admin: psycopg.Connection
) -> None:
    """What the owner may do, a forged archive may do: no more. A SECURITY DEFINER function
    runs as the target's owner; grants to another namespace's roles give them only the
    target's own table, never a way back into the victim."""
    names = _names(forge, target)
    script = """
CREATE TABLE "{schema}".mine (n int);
CREATE FUNCTION "{schema}".whoami() RETURNS text LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT session_user || '/' || current_user $$;
GRANT EXECUTE ON FUNCTION "{schema}".whoami() TO {login};
GRANT USAGE ON SCHEMA "{schema}" TO {victim_login};
GRANT SELECT ON "{schema}".mine TO {victim_login};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA "{schema}" GRANT ALL ON TABLES TO PUBLIC;
SET ROLE {login};
RESET ROLE;
""".format(**names)
    forged = _forged(target)
    forge.archive(store, forged, script.encode())
    forge.restore(store, target, _origin(forged))
    definer = admin.execute(
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'whoami'"
        " AND pronamespace = %s::regnamespace",
        (names["schema"],),
    ).fetchone()
    assert definer == (target.owner_role,)
    for role in (target.owner_role, target.login_role):
        assert admin.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
            " WHERE rolname = %s",
            (role,),
        ).fetchone() == (False, False, False, False)
    assert not admin.execute(
        "SELECT has_schema_privilege(%s, %s, 'USAGE')", (target.login_role, names["victim_schema"])
    ).fetchone()[0]  # type: ignore[index]


def test_a_forged_manifest_of_a_later_migration_version_is_refused_before_anything(
    forge: Forge, target: registry.TenantRecord, store: storage.Storage, admin: psycopg.Connection
) -> None:
    applied = manifest.AppliedMigration(99, "ghost", "0" * 64, "tenant")
    forged = _forged(target, schema_version=99, migrations=[applied])
    forge.archive(store, forged, f'CREATE TABLE "{target.schema_name}".x (n int);'.encode())
    with pytest.raises(taking.ArchiveTooNew):
        forge.restore(store, target, _origin(forged))
    assert not admin.execute(
        "SELECT 1 FROM pg_class WHERE relname = 'x' AND relnamespace = %s::regnamespace",
        (target.schema_name,),
    ).fetchall()


@pytest.mark.parametrize("isolation", ["database", "shared"])
def test_a_forged_manifest_of_another_isolation_mode_is_refused(
    forge: Forge, target: registry.TenantRecord, store: storage.Storage, isolation: str
) -> None:
    forged = _forged(target, isolation=isolation)
    forge.archive(store, forged, b"SELECT 1;\n")
    with pytest.raises(errors.BackupError, match="cannot go into"):
        forge.restore(store, target, _origin(forged))


@pytest.mark.parametrize("field", ["namespace", "tenant_uid"])
def test_a_forged_manifest_naming_another_namespace_or_tenant_is_refused_by_restore_and_verify(
    forge: Forge,
    target: registry.TenantRecord,
    store: storage.Storage,
    admin: psycopg.Connection,
    field: str,
) -> None:
    """The Backup object (its namespace, its tenant's UID) decides whose archive it is; a
    manifest naming the victim's namespace would make the verification's scratch copy in
    the victim's shared space."""
    honest = _forged(target)
    lie = {"namespace": VICTIM} if field == "namespace" else {"tenant_uid": forge.victim.uid}
    forge.archive(store, dataclasses.replace(honest, **lie), b"SELECT 1;\n")  # type: ignore[arg-type]
    with pytest.raises(errors.ArchiveTampered):
        forge.restore(store, target, _origin(honest))
    before = _registered(admin, forge.server, VICTIM)
    with pytest.raises(errors.ArchiveTampered):
        taking.verify(forge.server, store, LOCATION, None, forge.tools, _origin(honest))
    assert _registered(admin, forge.server, VICTIM) == before


def _registered(admin: psycopg.Connection, server: commands.Server, namespace: str) -> int:
    row = admin.execute(
        f'SELECT count(*) FROM "{server.control_schema}".tenants WHERE namespace = %s',
        (namespace,),
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def shared_pair(forge: Forge) -> Iterator[tuple[registry.TenantRecord, registry.TenantRecord]]:
    """Two shared tenants of the attacker's namespace, tables secured, the victim with rows."""
    server = forge.server
    victim, password = support.provision(server, "svic", Isolation.SHARED, ATTACKER)
    target, _ = support.provision(server, "starget", Isolation.SHARED, ATTACKER)
    space = tenancy.space_of(server, victim)
    with server.sessions.session(space.owner_role, victim.database_name) as conn:
        conn.execute(SHARED_TABLES.format(schema=space.schema).encode())
        with conn.transaction():
            securing.secure_tables(conn, space, as_owner=True)
    with support.login(server, victim, password) as app:
        app.execute("INSERT INTO sec_companies (name) VALUES ('victim co')")
    yield victim, target


def _block(table: str, columns: list[str], rows: list[str]) -> bytes:
    body = "".join(row + "\n" for row in rows).encode()
    return framing.header(framing.Block(table, columns, len(rows))) + body + framing.END_OF_DATA


@pytest.mark.parametrize("attack", ["tenant-id-column", "another-space", "control-schema"])
def test_forged_shared_rows_never_land_outside_the_target_tenant(
    forge: Forge,
    shared_pair: tuple[registry.TenantRecord, registry.TenantRecord],
    store: storage.Storage,
    admin: psycopg.Connection,
    attack: str,
) -> None:
    """Rows carrying the victim's ``tenant_id``, or aimed at a table outside the target's
    space, are refused whole: nothing is inserted for anyone."""
    victim, target = shared_pair
    space = tenancy.space_of(forge.server, target)
    blocks = {
        "tenant-id-column": _block("sec_companies", ["tenant_id", "name"], [f"{victim.uid}\tx"]),
        "another-space": _block(f"{forge.victim.schema_name}.notes", ["id"], ["2"]),
        "control-schema": _block("tenants", ["name"], ["planted"]),
    }
    payload = framing.MAGIC + blocks[attack] + framing.trailer()
    forged = _forged(target)
    forge.archive(store, forged, payload)
    with pytest.raises(errors.BackupError, match=r"no column tenant_id|is no shared table"):
        forge.restore(store, target, _origin(forged))
    counts = admin.execute(
        f'SELECT tenant_id::text, count(*) FROM "{space.schema}".sec_companies GROUP BY 1'
    ).fetchall()
    assert dict(counts) == {victim.uid: 1}
