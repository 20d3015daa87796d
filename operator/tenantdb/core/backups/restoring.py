"""An archive's data back into a freshly provisioned tenant, as that tenant's owner.

The operator has provisioned the target (roles, an empty schema or
database, its registry row). Everything the archive holds runs on a session
whose session user is the target's owner role (for a shared tenant, its
space's owner narrowed to the tenant's login role for every row written), so
a hostile archive can do no more than the target tenant itself could.

``schema`` and ``database`` (payload ``pg_dump-custom``): ``pg_restore
--file=- --no-owner`` turns the archive into SQL without connecting
anywhere; ``sqlscript`` splits it; the archive's schema and role names
(derived from its tenant's name and uid) are rewritten to the target's in
the statements (whole identifiers, strings of DDL included, so function
bodies keep naming the tenant's own schema), never in COPY rows; each
statement runs through psycopg and each COPY block streams through
``cursor.copy()``, all in ONE transaction with the ledger rows written after
it commits. ``CREATE SCHEMA`` of the target's schema (it exists),
``CREATE EXTENSION`` and ``COMMENT ON EXTENSION`` are skipped: the manifest's
extensions are made first (``ensure_extensions``). Grants and default
privileges come from the archive, mapped to the target's roles. Database
mode uses the same path rather than ``pg_restore --no-acl`` into the
database: the tenant's own grants and revocations survive (the marker
table's, which migrations rely on, among them), and the restore is one
transaction too; a failure leaves the target database as empty as before.

``shared`` (payload ``tenantdb-rows``): each block is copied into a
temporary table, then inserted as the tenant's login role (its row-level
security's WITH CHECK applies); ``tenant_id`` comes from the column's
default, the new tenant's. Keys of shared tables start with ``tenant_id``
(``securing`` refuses others), so surrogate values are kept as they are and
foreign keys stay consistent; a table with a unique key not starting with
``tenant_id`` is refused. Sequences behind those columns are moved past the
restored values, by the space's owner.
"""

import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import connecting, errors, locking, naming, registry, securing, shared, tenancy
from tenantdb.core.backups import (
    catalog,
    dumping,
    framing,
    manifest,
    programs,
    provenance,
    snapshots,
    sqlscript,
)
from tenantdb.core.backups import tools as tools_

Manifest = manifest.Manifest
_SKIPPED = re.compile(r"(CREATE|COMMENT ON) EXTENSION\s", re.IGNORECASE)


@dataclass(frozen=True)
class RestoreResult:
    """What was loaded."""

    statements: int
    """SQL statements run (COPY blocks included)."""
    rows: int
    """Rows loaded by COPY or INSERT."""
    size_bytes: int
    """Payload bytes read from the source."""


def restore(
    server: tenancy.Server,
    archive: Manifest,
    source: programs.Source,
    target: registry.TenantRecord,
    progress: programs.Progress | None = None,
    tools_dir: Path | None = None,
) -> RestoreResult:
    """Load ``source`` (``.read(n)``) into ``target`` and record the archive's
    migrations and seeders for it, holding the target's lock throughout."""
    with locking.hold(server.pool, server.control_schema, target.uid) as conn:
        if target.isolation == "shared":
            _check_space(conn, server, archive, target)
        result = load(server, archive, source, target, progress, tools_dir)
        if target.isolation != "shared":
            provenance.record_migrations(conn, server.control_schema, target, archive.migrations)
        provenance.record_seeders(conn, server.control_schema, target.uid, archive.seed_history)
    return result


def load(
    server: tenancy.Server,
    archive: Manifest,
    source: programs.Source,
    target: registry.TenantRecord,
    progress: programs.Progress | None = None,
    tools_dir: Path | None = None,
) -> RestoreResult:
    """The data alone, in one transaction on the target's owner session (no ledger)."""
    if archive.isolation != target.isolation:
        raise errors.BackupError(
            f"a {archive.isolation} archive cannot go into {target.isolation} tenant {target.name}"
        )
    counted = _Counting(source, progress)
    with (
        connecting.translated_errors(),
        server.sessions.session(target.owner_role, target.database_name) as work,
    ):
        if target.isolation == "shared":
            return _load_rows(server, work, counted, target)
        return _load_dump(server, work, archive, counted, target, tools_dir)


def identifier_map(archive: Manifest, target: registry.TenantRecord) -> dict[str, str]:
    """The archive's schema and role names (from its tenant's name and uid) to the
    target's: the schema and the login role share a name, as do the database."""
    old = naming.tenant_names(archive.tenant, archive.tenant_uid)
    new = naming.tenant_names(target.name, target.uid)
    return {old.owner_role: new.owner_role, old.login_role: new.login_role}


def rewriter(mapping: Mapping[str, str]) -> Callable[[str], str]:
    """Replace whole identifiers (not parts of longer ones) by the mapping."""
    if not mapping:
        return lambda text: text
    names = "|".join(re.escape(name) for name in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(rf"(?<![A-Za-z0-9_$])({names})(?![A-Za-z0-9_$])")
    return lambda text: pattern.sub(lambda found: mapping[found.group(1)], text)


def ensure_extensions(work: psycopg.Connection[Any], names: list[str], database: str) -> None:
    """Each extension the archive needs, created where missing if the owner may."""
    for name in names:
        found = work.execute(
            "SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) %s",
            (name,),
        ).fetchone()
        if found:
            continue
        try:
            with work.transaction():
                work.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise errors.BackupError(
                f"the archive needs extension {name}, which database {database} lacks and the"
                f" tenant's owner may not create ({connecting.describe(exc)}): ask a superuser"
                f" to CREATE EXTENSION {name} there"
            ) from exc


def _load_dump(
    server: tenancy.Server,
    work: psycopg.Connection[Any],
    archive: Manifest,
    source: "_Counting",
    target: registry.TenantRecord,
    tools_dir: Path | None,
) -> RestoreResult:
    _refuse_non_empty(work, target)
    version = int(work.info.server_version)
    found = tools_.find(version, tools_dir)
    ensure_extensions(work, archive.extensions, target.database_name)
    rewrite = rewriter(identifier_map(archive, target))
    skip_schema = f"CREATE SCHEMA {target.schema_name};"
    argv = [str(found.pg_restore), "--file=-", "--no-owner"]
    env = {
        k: v for k, v in programs.child_env(server, target.owner_role).items() if k != "PGPASSWORD"
    }
    failures: list[BaseException] = []
    count = rows = 0
    with work.transaction(), programs.running(argv, env, stdin=subprocess.PIPE) as child:
        assert child.stdin is not None and child.stdout is not None
        work.execute(clear_default_privileges(target))
        feeder = programs.feed(source, child.stdin, failures)
        script = framing.Buffered(child.stdout.read)
        for statement in sqlscript.statements(script):
            text = rewrite(statement.text)
            if _SKIPPED.match(text) or (target.isolation == "schema" and text == skip_schema):
                continue
            count += 1
            rows += _run(work, text, statement.is_copy, script)
        feeder.join()
        if failures:
            raise failures[0]
    return RestoreResult(count, rows, source.moved)


def clear_default_privileges(target: registry.TenantRecord) -> sql.Composed:
    """The target's provisioned default privileges, gone until the archive's own come
    (pg_dump writes them after the tables): else every restored table would get the
    login role's grants, whatever the archive's tables had (the marker table's
    revocation among them)."""
    ids = {
        "owner": sql.Identifier(target.owner_role),
        "schema": sql.Identifier(snapshots.home_schema(target)),
        "login": sql.Identifier(target.login_role),
    }
    return sql.SQL(";\n").join(
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
            " REVOKE ALL ON " + kind + " FROM {login}"
        ).format(**ids)
        for kind in ("TABLES", "SEQUENCES", "FUNCTIONS", "TYPES")
    )


def _run(work: psycopg.Connection[Any], text: str, is_copy: bool, script: framing.Buffered) -> int:
    """One statement (a COPY with its rows from ``script``); rows it loaded."""
    try:
        if not is_copy:
            work.execute(text.encode())
            return 0
        cursor = work.cursor()
        with cursor.copy(text.encode()) as copy:
            script.copy_block(copy.write)
        return max(cursor.rowcount, 0)
    except psycopg.Error as exc:
        first = text.splitlines()[0][:200]
        raise errors.BackupError(
            f"the archive's statement {first!r} failed: {connecting.describe(exc)}"
        ) from exc


def _refuse_non_empty(work: psycopg.Connection[Any], target: registry.TenantRecord) -> None:
    if target.isolation == "database":
        present = catalog.tables(work, [], every_schema=True)
    else:
        present = catalog.tables(work, [snapshots.home_schema(target)])
    if present:
        names = ", ".join(
            catalog.summary_name(s, t, snapshots.home_schema(target)) for s, t in present
        )
        raise errors.BackupError(f"tenant {target.name} is not empty (it has {names})")


def _check_space(
    conn: psycopg.Connection[Any],
    server: tenancy.Server,
    archive: Manifest,
    target: registry.TenantRecord,
) -> None:
    """The target's space has every version the rows were written under."""
    key = provenance.migration_key(target, server.shared_schema)
    missing = provenance.missing_in_space(conn, server.control_schema, key, archive.migrations)
    if missing:
        raise errors.BackupError(
            f"the shared space of tenant {target.name} lacks {', '.join(missing)}"
            " of the archive's: apply those Migrations there first"
        )


def _load_rows(
    server: tenancy.Server,
    work: psycopg.Connection[Any],
    source: "_Counting",
    target: registry.TenantRecord,
) -> RestoreResult:
    """Every block of a ``tenantdb-rows`` payload, inserted as the tenant, in one transaction."""
    space = tenancy.space_of(server, target)
    known = {t.name for t in securing.read_tables(work, space) if t.has_tenant_id}
    leaks = securing.key_leaks(work, space)
    reader = framing.Buffered(source.read)
    framing.read_magic(reader)
    count = rows = 0
    with work.transaction():
        while (block := framing.read_header(reader)) is not None:
            if block.table not in known:
                raise errors.BackupError(
                    f"the archive's table {block.table} is no shared table of {space.schema}"
                )
            _refuse_rekeying(leaks, block.table)
            rows += _insert_block(work, space, target, block, reader, count)
            count += 1
    return RestoreResult(count, rows, source.moved)


def _refuse_rekeying(leaks: list[str], table: str) -> None:
    for leak in leaks:
        if leak.startswith(f"shared table {table} has"):
            raise errors.BackupError(f"cannot re-key shared table {table} for a new tenant: {leak}")


def _insert_block(
    work: psycopg.Connection[Any],
    space: shared.Space,
    target: registry.TenantRecord,
    block: framing.Block,
    reader: framing.Buffered,
    index: int,
) -> int:
    """COPY into a staging table (as the space's owner), INSERT as the tenant."""
    allowed = dumping.export_columns(work, space.schema, block.table)
    unknown = [c for c in block.columns if c not in allowed]
    if unknown:
        raise errors.BackupError(
            f"shared table {block.table} has no column {', '.join(unknown)} of the archive's"
        )
    table = sql.Identifier(space.schema, block.table)
    stage = sql.Identifier(f"tenantdb_restore_{index}")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in block.columns)
    work.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            stage, columns, table
        )
    )
    with work.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as copy:
        reader.copy_block(copy.write)
    login = sql.Identifier(target.login_role)
    work.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(stage, login))
    work.execute(sql.SQL("SET LOCAL ROLE {}").format(login))
    inserted = work.execute(
        sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
            table, columns, columns, stage
        )
    ).rowcount
    work.execute("RESET ROLE")
    if inserted != block.rows:
        raise errors.BackupError(
            f"shared table {block.table}: {inserted} rows loaded, the archive says {block.rows}"
        )
    _advance_sequences(work, space.schema, block.table, block.columns, stage)
    return inserted


_SEQUENCES = sql.SQL(
    "SELECT a.attname::text, pg_catalog.pg_get_serial_sequence(%s, a.attname)"
    " FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)"
    " AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
    " AND pg_catalog.pg_get_serial_sequence(%s, a.attname) IS NOT NULL"
)


def _advance_sequences(
    work: psycopg.Connection[Any],
    schema: str,
    table: str,
    columns: list[str],
    stage: sql.Identifier,
) -> None:
    """Serial and identity sequences past the restored values (another space's may be
    behind them), as the space's owner; reads only the staging table."""
    qualified = sql.Identifier(schema, table).as_string(work)
    for column, sequence in work.execute(_SEQUENCES, (qualified, qualified, qualified)).fetchall():
        if column not in columns:
            continue
        work.execute(
            sql.SQL(
                "SELECT pg_catalog.setval(%(seq)s::pg_catalog.regclass, m) FROM"
                " (SELECT pg_catalog.max({column}) AS m FROM {stage}) AS s"
                " WHERE m OPERATOR(pg_catalog.>) coalesce(pg_catalog.pg_sequence_last_value("
                "%(seq)s::pg_catalog.regclass), 0)"
            ).format(column=sql.Identifier(column), stage=stage),
            {"seq": sequence},
        )


class _Counting:
    """A source that counts what is read from it and reports progress."""

    def __init__(self, source: programs.Source, progress: programs.Progress | None) -> None:
        self.source, self.progress, self.moved = source, progress, 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self.moved += len(data)
        if self.progress is not None and data:
            self.progress(self.moved)
        return data
