"""What an archive says about itself, written beside its data.

The manifest is what a restore checks before it creates anything: the
archive's sha256 and size, the tenant and isolation mode it came from, the
migration versions its data model had, and per table the rows and a
checksum that a restored copy must reproduce.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_VERSION = 1
"""Bumped when the archive layout changes; a reader refuses versions it does not know."""


@dataclass(frozen=True)
class TableSummary:
    """One table's content as read in the backup's snapshot."""

    name: str
    """The table's name inside the tenant's schema (unqualified)."""
    rows: int
    checksum: str
    """``checksums.table_checksum`` of the rows (order-independent, hex)."""


@dataclass(frozen=True)
class AppliedMigration:
    """One migration-ledger entry of the tenant, carried so a restore records it as applied."""

    version: int
    migration: str
    """The Migration object's name."""
    checksum: str
    scope: str
    """``tenant`` or ``shared``."""
    description: str = ""


@dataclass(frozen=True)
class SeededEntry:
    """One seed-history entry of the tenant: a restore records it, so the seeder is
    skipped at this version (``seeding.running.skip_reason`` compares versions)."""

    seeder: str
    version: int
    profile: str
    """``production`` or ``development``."""
    checksum: str
    rows: int = 0


@dataclass(frozen=True)
class Manifest:
    """Everything a restore or a verification needs to know before reading data."""

    tenant: str
    namespace: str
    tenant_uid: str
    isolation: str
    """``schema``, ``database`` or ``shared``."""
    payload: str
    """How the data is laid out: ``pg_dump-custom`` or ``tenantdb-rows``."""
    server_version: int
    """``server_version_num`` of the server the data came from."""
    tool_version: str
    """The tenantdb version that wrote the archive."""
    started_at: str
    completed_at: str
    schema_version: int | None
    """The highest migration version applied to the tenant (its space's, for shared)."""
    migrations: list[AppliedMigration] = field(default_factory=list)
    """Every migration applied when the snapshot was taken, by version."""
    seeders: list[str] = field(default_factory=list)
    """Seeders recorded as run on the tenant: a restored tenant does not run them again."""
    seed_history: list[SeededEntry] = field(default_factory=list)
    """The entries behind ``seeders``, with the versions a restore records."""
    tables: list[TableSummary] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    """Extensions the tenant's objects depend on (created before a restore)."""
    compression: str = "none"
    encrypted: bool = False
    size_bytes: int = 0
    """Bytes of the stored data object."""
    payload_bytes: int = 0
    """Bytes of the payload before compression and encryption (for progress)."""
    sha256: str = ""
    """sha256 of the stored data object (after compression and encryption)."""
    format_version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        """Rows in all tables."""
        return sum(table.rows for table in self.tables)

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys), so that its hash is stable."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Manifest":
        """Parse a manifest, refusing a format this version cannot read."""
        data: dict[str, Any] = json.loads(raw)
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"archive format {version!r} is not {FORMAT_VERSION}")
        tables = [TableSummary(**table) for table in data.pop("tables", [])]
        applied = [AppliedMigration(**entry) for entry in data.pop("migrations", [])]
        seeded = [SeededEntry(**entry) for entry in data.pop("seed_history", [])]
        return cls(**data, tables=tables, migrations=applied, seed_history=seeded)


def human_size(size: int) -> str:
    """Bytes in the binary units ``kubectl get`` readers expect (``12.5MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
