"""The ``Backup`` resource: a logical backup of exactly one tenant."""

from enum import StrEnum

from pydantic import Field

from tenantdb.api import base, conditions, resources


class Format(StrEnum):
    """pg_dump's output format (``--format``)."""

    CUSTOM = "custom"
    PLAIN = "plain"
    DIRECTORY = "directory"


class Compression(StrEnum):
    """pg_dump's compression method (``--compress``)."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    LZ4 = "lz4"


class Phase(StrEnum):
    """The backup's phase."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class VolumeStorage(base.ApiModel):
    """Where the dump file is written."""

    path: str = Field(min_length=1, max_length=4096, pattern=r"^/[^\x00]*$")
    """An absolute directory on a volume mounted into the operator."""


class SecretKeyRef(base.ApiModel):
    """A key of a Secret in the Backup's namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """The Secret's name."""
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    """The key within the Secret."""


class Encryption(base.ApiModel):
    """Encrypt the dump at rest with a key kept in a Secret."""

    key_secret: SecretKeyRef
    """The Secret key holding the passphrase."""


class BackupSpec(base.ApiModel):
    """The desired backup."""

    tenant: str = Field(
        pattern=r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$",
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]
        },
    )
    """The Tenant (same namespace) to back up. Immutable."""
    format: Format = Format.CUSTOM
    """pg_dump's output format."""
    compression: Compression = Compression.GZIP
    """Compression method."""
    compression_level: int | None = Field(default=None, ge=0, le=22)
    """Compression level (method-specific bounds)."""
    storage: VolumeStorage
    """Where the dump is written."""
    encryption: Encryption | None = None
    """Encrypt the dump at rest."""
    ttl: str | None = Field(default=None, pattern=r"^[0-9]{1,6}(m|h|d)$")
    """Delete the dump and this object this long after completion (``30d``)."""
    schedule: str | None = Field(
        default=None, max_length=128, pattern=r"^(@(hourly|daily|weekly|monthly)|(\S+\s+){4}\S+)$"
    )
    """A cron schedule; each run produces a new dump."""


class BackupStatus(conditions.ObservedStatus):
    """The observed state of the backup."""

    phase: Phase | None = None
    """Pending, Running, Completed or Failed."""
    size: str | None = None
    """The dump's size, human readable (``12.5MiB``)."""
    size_bytes: int | None = None
    """The dump's size in bytes."""
    sha256: str | None = None
    """sha256 of the dump file."""
    location: str | None = None
    """Where the dump was written."""
    started_at: str | None = None
    """When the dump started (RFC 3339)."""
    completed_at: str | None = None
    """When the dump finished (RFC 3339)."""


BACKUP = resources.ResourceKind(
    kind="Backup",
    plural="backups",
    short_names=("tbk",),
    spec=BackupSpec,
    status=BackupStatus,
    description="A logical backup of exactly one tenant.",
    printer_columns=(
        resources.PrinterColumn("Tenant", ".spec.tenant"),
        resources.PrinterColumn("Phase", ".status.phase"),
        resources.PrinterColumn("Size", ".status.size"),
        resources.PrinterColumn("Location", ".status.location", priority=1),
        resources.PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
