"""The ``Backup`` and ``BackupSchedule`` resources: logical backups of exactly one tenant."""

from enum import StrEnum

from pydantic import Field

from tenantdb.api import base, conditions, resources

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1123 label: the name of an object in the same namespace."""
TENANT_PATTERN = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"
AGE_PATTERN = r"^[0-9]{1,6}(m|h|d)$"
"""A retention age such as ``90m``, ``12h`` or ``30d``."""
IMMUTABLE = {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]}


class Compression(StrEnum):
    """How the archive's bytes are compressed."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class Phase(StrEnum):
    """The backup's phase."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    EXPIRED = "Expired"
    """Its ``ttl`` passed and its stored data was removed; the object stays as a record."""


class DataPolicy(StrEnum):
    """What deleting the Backup object does to its stored archive."""

    DELETE = "Delete"
    RETAIN = "Retain"


class VolumeStorage(base.ApiModel):
    """A directory the operator can write (a PersistentVolumeClaim mounted into its pod)."""

    path: str = Field(min_length=1, max_length=4096, pattern=r"^/([^\x00]*[^/\x00])?$")
    """An absolute directory on a volume mounted into the operator."""


class SecretKeyRef(base.ApiModel):
    """A key of a Secret in the Backup's namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """The Secret's name."""
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    """The key within the Secret."""


class S3Credentials(base.ApiModel):
    """A Secret (same namespace) holding an access key pair."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """The Secret's name."""
    access_key_id_key: str = Field(default="accessKeyId", pattern=r"^[-._a-zA-Z0-9]+$")
    """The key of the access key id."""
    secret_access_key_key: str = Field(default="secretAccessKey", pattern=r"^[-._a-zA-Z0-9]+$")
    """The key of the secret access key."""


class S3Storage(base.ApiModel):
    """An S3 bucket (AWS or an S3-compatible server)."""

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """The bucket's name."""
    prefix: str = Field(default="", max_length=512, pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")
    """Where archives go inside the bucket: empty, or path segments each ending in ``/``."""
    endpoint: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$")
    """The server's URL for S3-compatible servers; AWS's regional endpoint when unset."""
    region: str = Field(default="us-east-1", max_length=64, pattern=r"^[a-z0-9-]+$")
    """The bucket's region."""
    path_style: bool = False
    """Address the bucket in the path (``endpoint/bucket/key``), as most S3-compatible
    servers need, rather than as a host name."""
    credentials: S3Credentials | None = None
    """The access key pair; the operator's own credentials (environment, IAM role) when unset."""


class BackupStorage(base.ApiModel):
    """Where the archive is stored: exactly one of ``volume`` and ``s3``."""

    volume: VolumeStorage | None = None
    """A directory on a volume of the operator's pod."""
    s3: S3Storage | None = None
    """An S3 bucket."""


class Encryption(base.ApiModel):
    """Encrypt the archive (AES-256-GCM) under a key kept in a Secret."""

    key_secret: SecretKeyRef
    """A Secret key holding the master key: 32 bytes, base64-encoded. Each tenant's
    own key is wrapped by it; deleting the tenant's key makes its archives unreadable."""


class BackupOptions(base.ApiModel):
    """How a backup is taken and kept: shared by ``Backup`` and ``BackupSchedule``."""

    storage: BackupStorage | None = Field(
        default=None,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.volume) != has(self.s3)",
                    "message": "set exactly one of volume and s3",
                }
            ]
        },
    )
    """Where the archive goes; the operator's default storage when unset."""
    compression: Compression = Compression.ZSTD
    """Compression of the archive: ``zstd`` (default), ``gzip`` or ``none``."""
    compression_level: int | None = Field(default=None, ge=1, le=19)
    """Compression level: 1-9 for gzip, 1-19 for zstd; the method's default when unset."""
    encryption: Encryption | None = None
    """Encrypt the archive at rest."""
    verify: bool = False
    """Once taken, restore the archive into a scratch copy and compare it with the
    manifest (``status.lastVerified``)."""


COMPRESSION_RULES = (
    resources.Validation(
        rule="!has(self.spec.compressionLevel) || self.spec.compression != 'none'",
        message="compressionLevel needs a compression method",
        field_path=".spec.compressionLevel",
    ),
    resources.Validation(
        rule=(
            "!has(self.spec.compressionLevel) || self.spec.compression != 'gzip'"
            " || self.spec.compressionLevel <= 9"
        ),
        message="gzip levels are 1-9",
        field_path=".spec.compressionLevel",
    ),
)


class BackupSpec(BackupOptions):
    """The desired backup. Immutable once created, except ``dataPolicy``."""

    tenant: str = Field(pattern=TENANT_PATTERN)
    """The Tenant (same namespace) to back up."""
    ttl: str | None = Field(default=None, pattern=AGE_PATTERN)
    """Remove the stored archive this long after completion (``30d``); the object stays
    with phase ``Expired``."""
    data_policy: DataPolicy = DataPolicy.DELETE
    """``Delete`` removes the stored archive with the Backup object; ``Retain`` keeps it."""


class Verification(base.ApiModel):
    """The outcome of restoring the archive into a scratch copy."""

    time: str
    """When the verification finished (RFC 3339)."""
    passed: bool
    """Whether every table matched the manifest."""
    message: str = Field(default="", max_length=4096)
    """What differed, if anything."""


class BackupStatus(conditions.ObservedStatus):
    """The observed state of the backup."""

    phase: Phase | None = None
    """Pending, Running, Completed, Failed or Expired."""
    isolation: str | None = None
    """The tenant's isolation mode when it was backed up."""
    server: str | None = None
    """The server the tenant lived on (``default``: the operator's own); a verification
    restores its scratch copy there."""
    tenant_uid: str | None = None
    """The UID of the Tenant backed up (a later Tenant of the same name is another)."""
    size: str | None = None
    """The archive's size, human readable (``12.5MiB``)."""
    size_bytes: int | None = None
    """The archive's size in bytes."""
    sha256: str | None = None
    """sha256 of the stored archive."""
    location: str | None = None
    """Where the archive is (``s3://bucket/key/`` or a directory)."""
    schema_version: int | None = None
    """The highest migration version the tenant had."""
    tables: int | None = None
    """Tables in the archive."""
    rows: int | None = None
    """Rows in the archive."""
    started_at: str | None = None
    """When the backup started (RFC 3339)."""
    completed_at: str | None = None
    """When the archive was complete (RFC 3339)."""
    attempts: int | None = None
    """How many times the backup was started (an interrupted one is started again)."""
    last_verified: Verification | None = None
    """The latest verification of the archive."""
    verify_request: str | None = None
    """The last value of the ``tenantdb.io/verify`` annotation acted on."""


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
        resources.PrinterColumn("Version", ".status.schemaVersion", type="integer", priority=1),
        resources.PrinterColumn("Location", ".status.location", priority=1),
        resources.PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    root_validations=(
        resources.Validation(
            rule=(
                "!has(oldSelf.spec) || (self.spec.tenant == oldSelf.spec.tenant"
                " && self.spec.compression == oldSelf.spec.compression"
                " && has(self.spec.storage) == has(oldSelf.spec.storage)"
                " && (!has(self.spec.storage) || self.spec.storage == oldSelf.spec.storage)"
                " && has(self.spec.encryption) == has(oldSelf.spec.encryption)"
                " && (!has(self.spec.encryption) || self.spec.encryption == oldSelf.spec.encryption))"
            ),
            message="a Backup's tenant, storage, compression and encryption are immutable",
            field_path=".spec",
        ),
        *COMPRESSION_RULES,
    ),
)


class Retention(base.ApiModel):
    """Which of the schedule's Backups to keep; older ones are deleted with their data."""

    keep: int | None = Field(default=None, ge=1, le=10000)
    """Keep at most this many completed Backups (the newest)."""
    max_age: str | None = Field(default=None, pattern=AGE_PATTERN)
    """Delete Backups older than this (``30d``)."""


class BackupScheduleSpec(BackupOptions):
    """Back up one tenant on a cron schedule."""

    tenant: str = Field(pattern=TENANT_PATTERN)
    """The Tenant (same namespace) to back up."""
    schedule: str = Field(
        max_length=128,
        pattern=r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4,5}\S+)$",
    )
    """A cron expression (five fields, or six with seconds first) or ``@daily`` and friends,
    in UTC."""
    suspend: bool = False
    """``true`` pauses the schedule; no Backup is created until it is ``false`` again."""
    immediate: bool = False
    """Take the first Backup as soon as the schedule is created."""
    retention: Retention | None = None
    """Which Backups to keep."""


class SchedulePhase(StrEnum):
    """Whether the schedule creates Backups."""

    ACTIVE = "Active"
    SUSPENDED = "Suspended"
    FAILED = "Failed"
    """The schedule cannot run (an expression the operator cannot parse)."""


class BackupScheduleStatus(conditions.ObservedStatus):
    """When the schedule last ran and runs next."""

    phase: SchedulePhase | None = None
    """Active, Suspended or Failed."""
    last_schedule_time: str | None = None
    """When the latest Backup was created (RFC 3339)."""
    next_schedule_time: str | None = None
    """When the next Backup is due (RFC 3339)."""
    last_backup: str | None = None
    """The name of the latest Backup."""
    last_successful_backup: str | None = None
    """The name of the latest Completed Backup."""


BACKUP_SCHEDULE = resources.ResourceKind(
    kind="BackupSchedule",
    plural="backupschedules",
    short_names=("tbs",),
    spec=BackupScheduleSpec,
    status=BackupScheduleStatus,
    description="Backups of one tenant on a cron schedule, with retention.",
    printer_columns=(
        resources.PrinterColumn("Tenant", ".spec.tenant"),
        resources.PrinterColumn("Schedule", ".spec.schedule"),
        resources.PrinterColumn("Phase", ".status.phase"),
        resources.PrinterColumn("Last", ".status.lastScheduleTime", type="date"),
        resources.PrinterColumn("Next", ".status.nextScheduleTime", priority=1),
        resources.PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    root_validations=COMPRESSION_RULES,
)
