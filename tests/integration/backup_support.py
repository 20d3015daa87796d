"""Helpers of the backup integration tests (no tests here): tenants with data written
through their own login, dumps into files, and row-by-row comparison."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, passwords, registry
from tenantdb.core.backups import dumping, manifest, restoring
from tenantdb.settings import DEFAULT_PLANS

NAMESPACE = "backups"


def provision(
    server: commands.Server, name: str, mode: Isolation, namespace: str = NAMESPACE
) -> tuple[registry.TenantRecord, str]:
    """A fresh tenant and its login password, as provisioning returns it."""
    password = passwords.generate()
    request = commands.TenantRequest(
        uid=str(uuid.uuid4()),
        name=f"{name}-{uuid.uuid4().hex[:6]}",
        namespace=namespace,
        isolation=mode,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )
    commands.provision(server, request, password, reset_password=True)
    with connecting.connection(server.pool) as conn:
        record = registry.load(conn, server.control_schema, request.uid)
    assert record is not None
    return record, password


def login(
    server: commands.Server, record: registry.TenantRecord, password: str
) -> psycopg.Connection:
    """The tenant's application login (autocommit)."""
    url = conninfo.make_conninfo(
        server.url,
        user=record.login_role,
        password=password,
        dbname=record.database_name,
        options="",
    )
    return psycopg.connect(url, autocommit=True)


def dump_to_file(
    server: commands.Server, record: registry.TenantRecord, path: Path
) -> manifest.Manifest:
    with path.open("wb") as sink:
        result = dumping.dump(server, record, sink)
    assert result.size_bytes == path.stat().st_size
    return dumping.manifest_for(record, result, "start", "end", "test")


def restore_file(
    server: commands.Server, archive: manifest.Manifest, path: Path, target: registry.TenantRecord
) -> restoring.RestoreResult:
    with path.open("rb") as source:
        return restoring.restore(server, archive, source, target)


def rows(
    conn: psycopg.Connection, table: str, exclude: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """Every row of a table the session sees, sorted, without the excluded columns."""
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
        if r[0] not in exclude
    ]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.SQL(table)
    )
    return sorted(conn.execute(query).fetchall(), key=repr)


def sequences(conn: psycopg.Connection, schema: str) -> dict[str, tuple[Any, ...]]:
    found = conn.execute(
        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = %s", (schema,)
    ).fetchall()
    return {name: (value,) for name, value in found}
