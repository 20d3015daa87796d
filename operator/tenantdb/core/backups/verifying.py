"""Whether an archive restores to what its manifest says: into a scratch tenant, compared.

The scratch copy is a tenant the operator provisions for the purpose (its
own owner and login roles, schema or database, or a tenant of the archive's
namespace's shared space; suspended, so nobody logs in as its login role)
and drops again whatever happens, registry row included. The data is
loaded exactly as a restore loads it (as the scratch owner), then every
table's rows and checksum are read again the way the dump read them and
compared with the manifest; tables on one side only are mismatches too.
"""

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import connecting, passwords, registry, tenancy
from tenantdb.core.backups import (
    catalog,
    checksums,
    dumping,
    manifest,
    programs,
    restoring,
    snapshots,
)
from tenantdb.settings import PlanLimits

SCRATCH_PREFIX = "verify-"
SCRATCH_PLAN = "verification"


@dataclass(frozen=True)
class VerifyResult:
    """The comparison of a restored copy with the manifest."""

    tables: list[manifest.TableSummary]
    """As read from the restored copy."""
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The copy matches the manifest in every table."""
        return not self.mismatches


def verify(
    server: tenancy.Server,
    archive: manifest.Manifest,
    source: programs.Source,
    tools_dir: Path | None = None,
    progress: programs.Progress | None = None,
) -> VerifyResult:
    """Restore ``source`` into a scratch tenant and compare it with ``archive``."""
    with scratch(server, archive) as target:
        restoring.load(server, archive, source, target, progress, tools_dir=tools_dir)
        found = summaries(server, target, archive)
    return VerifyResult(found, compare(archive.tables, found))


def compare(expected: list[manifest.TableSummary], found: list[manifest.TableSummary]) -> list[str]:
    """Every difference, one line each."""
    wanted = {t.name: t for t in expected}
    have = {t.name: t for t in found}
    problems = [f"table {name} is missing" for name in sorted(wanted.keys() - have.keys())]
    problems += [
        f"table {name} is not in the manifest" for name in sorted(have.keys() - wanted.keys())
    ]
    for name in sorted(wanted.keys() & have.keys()):
        want, got = wanted[name], have[name]
        if want.rows != got.rows:
            problems.append(f"table {name} has {got.rows} rows, the manifest says {want.rows}")
        elif want.checksum != got.checksum:
            problems.append(f"table {name}'s checksum is {got.checksum}, not {want.checksum}")
    return problems


@contextmanager
def scratch(server: tenancy.Server, archive: manifest.Manifest) -> Iterator[registry.TenantRecord]:
    """A tenant of the archive's mode (and namespace), dropped with everything it has."""
    uid = str(uuid.uuid4())
    name = SCRATCH_PREFIX + secrets.token_hex(6)
    request = tenancy.TenantRequest(
        uid=uid,
        name=name,
        namespace=archive.namespace,
        isolation=Isolation(archive.isolation),
        plan=SCRATCH_PLAN,
        limits=PlanLimits(connection_limit=1),
        suspended=True,
    )
    try:
        tenancy.provision(server, request, passwords.generate(), reset_password=True)
        with connecting.connection(server.pool) as conn:
            record = registry.load(conn, server.control_schema, uid)
        assert record is not None
        yield record
    finally:
        tenancy.deprovision(server, uid, name, drop=True)


def summaries(
    server: tenancy.Server, target: registry.TenantRecord, archive: manifest.Manifest
) -> list[manifest.TableSummary]:
    """The restored copy's tables, read as the dump reads them."""
    home = snapshots.home_schema(target)
    with (
        connecting.translated_errors(),
        server.sessions.session(target.owner_role, target.database_name) as work,
        work.transaction(),
    ):
        if target.isolation == "shared":
            work.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(target.login_role)))
            space = tenancy.space_of(server, target).schema
            return [
                checksums.table_summary(work, space, t.name, dumping.SHARED_EXCLUDED)
                for t in archive.tables
            ]
        if target.isolation == "database":
            relations = catalog.tables(work, [], every_schema=True)
        else:
            relations = catalog.tables(work, [home])
        found = []
        for schema, table in relations:
            summary = checksums.table_summary(work, schema, table)
            name = catalog.summary_name(schema, table, home)
            found.append(manifest.TableSummary(name, summary.rows, summary.checksum))
        return found
