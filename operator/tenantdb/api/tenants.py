"""The ``Tenant`` resource: one customer of the SaaS and where its data lives."""

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from tenantdb.api import base, conditions, resources, selectors

TENANT_NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"
"""Tenant object names: lowercase, start with a letter, at most 40 characters.

They become part of schema, role and database names, which PostgreSQL caps
at 63 bytes; the rest of those names is a prefix and a hash of the UID.
"""

METADATA_KEY = Annotated[str, StringConstraints(min_length=1, max_length=63)]
"""A ``metadata`` key: 1-63 characters (a PostgreSQL identifier's length)."""
METADATA_VALUE = Annotated[str, StringConstraints(max_length=256)]
"""A ``metadata`` value: at most 256 characters, so that 64 entries stay near 20 KB."""

DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"


class Isolation(StrEnum):
    """How a tenant's data is separated from every other tenant's."""

    SCHEMA = "schema"
    SHARED = "shared"
    DATABASE = "database"


class DeletionPolicy(StrEnum):
    """What deleting the Tenant object does to the tenant's data."""

    RETAIN = "Retain"
    DELETE = "Delete"
    BACKUP_THEN_DELETE = "BackupThenDelete"


class SeedProfile(StrEnum):
    """Which seeders may run: ``production`` ones are safe everywhere."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"


class Phase(StrEnum):
    """The tenant's lifecycle phase, a summary of its conditions."""

    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    SUSPENDED = "Suspended"
    FAILED = "Failed"
    DELETING = "Deleting"


class SeedSpec(base.ApiModel):
    """Seed data to load after migrations and before the tenant is Ready."""

    profile: SeedProfile = SeedProfile.PRODUCTION
    """``production`` runs only production-safe seeders; ``development`` runs
    both, and is refused by an operator configured for production."""
    seeders: list[Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=list, max_length=64
    )
    """Seeder names to run; empty means every seeder of the profile."""


class ServerRef(base.ApiModel):
    """The PostgreSQL server that hosts the tenant."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """A ``DatabaseServer``'s name, or ``default`` for the operator's own server."""


class RestoreFrom(base.ApiModel):
    """Create the tenant's data from a Backup instead of from scratch."""

    backup: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=253)
    """Name of a Backup in the same namespace."""


class TenantSpec(base.ApiModel):
    """The desired state of a tenant."""

    isolation: Isolation = Field(
        default=Isolation.SCHEMA,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "isolation is immutable"}
            ]
        },
    )
    """``schema``: a schema and roles of its own; ``shared``: rows in shared
    tables keyed by ``tenant_id`` under row-level security; ``database``: a
    database of its own. Immutable."""
    display_name: str | None = Field(default=None, min_length=1, max_length=128)
    """Human-readable name, carried into the tenant registry."""
    domain: str | None = Field(default=None, max_length=253, pattern=DOMAIN_PATTERN)
    """The tenant's DNS domain (lowercase); unique across all tenants."""
    plan: str = Field(default="standard", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Plan name; maps to per-tenant limits (CONNECTION LIMIT,
    statement_timeout) from the operator configuration."""
    suspended: bool = False
    """``true`` makes the login role NOLOGIN (ALTER ROLE ... NOLOGIN) and
    ends its sessions; no data is touched."""
    metadata: dict[METADATA_KEY, METADATA_VALUE] = Field(default_factory=dict, max_length=64)
    """Free-form labels carried into the tenant registry's ``metadata``: at
    most 64 entries, keys of 1-63 characters, values of at most 256."""
    seed: SeedSpec | None = None
    """Seeders to run once migrations are applied."""
    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    """What deleting the Tenant does: ``Retain`` keeps schema, roles and
    data; ``Delete`` drops them; ``BackupThenDelete`` takes a Backup to the
    operator's default storage, waits until it is Completed, then drops them
    (if the backup fails nothing is deleted, and the Tenant says why)."""
    server_ref: ServerRef | None = None
    """Which PostgreSQL server hosts the tenant. Without it (and without
    ``serverSelector``) the tenant lives on the operator's own server. Immutable."""
    server_selector: selectors.LabelSelector | None = None
    """Place the tenant on one of the ``DatabaseServer``s whose labels match: the
    Ready, schedulable one with room that hosts the fewest tenants (ties: by name).
    Decided once, when the tenant is first provisioned. Immutable; not with ``serverRef``."""
    restore_from: RestoreFrom | None = None
    """Create this tenant's data from a Completed Backup of a tenant of the same
    namespace and isolation mode; later Migrations are then applied on top.
    Immutable."""


class Restored(base.ApiModel):
    """Which archive a tenant was restored from, and when."""

    backup: str
    """The Backup's name."""
    sha256: str
    """The archive's sha256."""
    schema_version: int | None = None
    """The migration version of the archive; later Migrations were applied on top."""
    rows: int = 0
    """Rows restored."""
    completed_at: str
    """When the restore finished (RFC 3339)."""


class Bookkeeping(base.ApiModel):
    """kopf's own state of the object, kept in status so that it costs no write of its own."""

    last_handled_configuration: str | None = None
    """The spec and metadata last reconciled, as JSON (large values as digests)."""
    progress: dict[str, str] | None = None
    """Handlers retrying or in progress, each record as JSON."""
    touch: str | None = None
    """Changed to wake a handler that waits for a delay."""
    requeue: str | None = None
    """Changed to reconcile the tenant again after it had to wait."""


class Usage(base.ApiModel):
    """What the tenant uses, refreshed by the operator's usage survey (docs/operations.md)."""

    bytes: int | None = None
    """Bytes of its tables, indexes and TOAST (``pg_total_relation_size``), or of its
    database (``pg_database_size``); absent for ``shared`` tenants (see ``spaceBytes``)."""
    space_bytes: int | None = None
    """``shared`` tenants: bytes of the whole shared space of the namespace."""
    tables: int | None = None
    """Tables of the tenant (partitions and tenantdb's bookkeeping not counted)."""
    connections: int = 0
    """Live sessions of its login role (``pg_stat_activity``)."""
    connection_limit: int | None = None
    """The login role's CONNECTION LIMIT (the plan's); absent if unlimited."""
    oldest_transaction_seconds: int | None = None
    """Age of its oldest open transaction, in seconds; absent when none is open."""
    invalid_indexes: list[str] = Field(default_factory=list, max_length=32)
    """Indexes left invalid by a failed ``CREATE INDEX CONCURRENTLY`` (at most 32 named)."""
    measured_at: str | None = None
    """When the numbers were read (RFC 3339, the server's clock)."""


class Finding(base.ApiModel):
    """One integrity problem found by validation."""

    kind: str
    """What it is about: NotValidConstraint, InvalidIndex, UnexpectedTable, MissingTable,
    SequenceBehind, UnknownVersion, ChangedVersion."""
    object: str
    message: str


class ValidationResult(base.ApiModel):
    """The last validation asked for with the ``tenantdb.io/validate`` annotation."""

    request: str
    """The annotation's value this result answers."""
    passed: bool | None = None
    """No findings; absent while it could not run (see ``message``)."""
    findings: list[Finding] = Field(default_factory=list, max_length=50)
    """The findings (the first 50)."""
    finding_count: int = 0
    message: str = ""
    completed_at: str | None = None


class ResetResult(base.ApiModel):
    """The last reset asked for with the ``tenantdb.io/reset`` annotation."""

    request: str
    """The annotation's value this result answers (it must be the tenant's name)."""
    phase: str
    """``BackingUp`` (waiting for its Backup), ``Busy`` (a migration or backup of the tenant
    is running, or its server is unreachable: retried), ``Completed``, ``Refused`` (no
    confirmation; see ``message``) or ``Failed``."""
    backup: str | None = None
    """The Backup taken before the reset (production)."""
    emptied: int = 0
    """Tables emptied."""
    kept: list[str] = Field(default_factory=list, max_length=64)
    """Tables whose rows a migration wrote (reference data), kept."""
    reseeded: list[str] = Field(default_factory=list, max_length=64)
    message: str = ""
    completed_at: str | None = None


class TenantStatus(conditions.ObservedStatus):
    """The observed state of a tenant, written by the operator only."""

    phase: Phase | None = None
    """Lifecycle phase, a summary of the conditions."""
    schema_name: str | None = Field(default=None, alias="schema")
    """The PostgreSQL schema holding the tenant's tables."""
    database: str | None = None
    """The PostgreSQL database holding the tenant's data."""
    role: str | None = None
    """The tenant's LOGIN role."""
    owner_role: str | None = None
    """The NOLOGIN role owning the tenant's objects."""
    credentials_secret: str | None = None
    """Name of the Secret with host, port, database, username, password, uri."""
    credentials_rotation: str | None = None
    """The last value of the ``tenantdb.io/rotate-credentials`` annotation acted on."""
    tenant_id: str | None = None
    """The ``tenant_id`` of the tenant's rows in shared tables (``shared`` isolation)."""
    version: int | None = None
    """The highest migration version applied to this tenant."""
    seeded: bool | None = None
    """Whether every requested seeder has run."""
    restored: Restored | None = None
    """The Backup the tenant's data came from (``spec.restoreFrom``), once restored."""
    final_backup: str | None = None
    """The Backup ``BackupThenDelete`` took (or is taking) before deleting the data."""
    server: str | None = None
    """The server the tenant lives on (``default``: the operator's own); never changes."""
    usage: Usage | None = None
    """Size, tables, connections and oldest transaction, refreshed by the usage survey."""
    validation: ValidationResult | None = None
    """The last integrity validation (``tenantdb.io/validate``)."""
    reset: ResetResult | None = None
    """The last data reset (``tenantdb.io/reset``)."""
    operator: Bookkeeping | None = None
    """The operator's own bookkeeping; not for users."""


def _immutable(name: str) -> resources.Validation:
    """A rule keeping an optional spec field as it was first written (or absent)."""
    return resources.Validation(
        rule=(
            f"!has(oldSelf.spec) || (has(self.spec.{name}) == has(oldSelf.spec.{name})"
            f" && (!has(self.spec.{name}) || self.spec.{name} == oldSelf.spec.{name}))"
        ),
        message=f"{name} is immutable",
        field_path=f".spec.{name}",
    )


TENANT = resources.ResourceKind(
    kind="Tenant",
    plural="tenants",
    short_names=("tn", "tnt"),
    spec=TenantSpec,
    status=TenantStatus,
    spec_required=False,
    description="One customer of the SaaS: a schema, database or set of rows, with its roles.",
    root_validations=(
        resources.Validation(
            rule=f"self.metadata.name.matches('{TENANT_NAME_PATTERN}')",
            message=(
                "tenant names must be 1-40 lowercase letters, digits or '-', "
                "start with a letter and end with a letter or digit"
            ),
            reason="FieldValueInvalid",
        ),
        resources.Validation(
            rule="!self.metadata.name.startsWith('pg-')",
            message="tenant names must not start with 'pg-' (PostgreSQL reserves pg_)",
            reason="FieldValueInvalid",
        ),
        _immutable("serverRef"),
        _immutable("serverSelector"),
        resources.Validation(
            rule="!has(self.spec) || !(has(self.spec.serverRef) && has(self.spec.serverSelector))",
            message="serverRef and serverSelector exclude each other",
            field_path=".spec.serverSelector",
        ),
        _immutable("restoreFrom"),
    ),
    printer_columns=(
        resources.PrinterColumn("Phase", ".status.phase"),
        resources.PrinterColumn("Isolation", ".spec.isolation"),
        resources.PrinterColumn("Plan", ".spec.plan", priority=1),
        resources.PrinterColumn("Version", ".status.version", type="integer"),
        resources.PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        resources.PrinterColumn("Schema", ".status.schema", priority=1),
        resources.PrinterColumn("Server", ".status.server", priority=1),
        resources.PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
