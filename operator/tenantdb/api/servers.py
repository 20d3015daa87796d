"""The ``DatabaseServer`` resource: a PostgreSQL server tenants can be placed on.

Cluster-scoped, like a StorageClass: one server hosts the tenants of every
namespace, and only who may create cluster-scoped objects may point the
operator at a server. Its credentials are a Secret in the operator's own
namespace, so a namespace user can neither name a server nor read one's
password. The operator's own server (``DATABASE_URL``) is always there under
the reserved name ``default``.
"""

from enum import StrEnum

from pydantic import Field

from tenantdb.api import base, conditions, resources

DEFAULT = "default"
"""The operator's own server's name; no DatabaseServer may take it."""
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Phase(StrEnum):
    """Whether tenants can be served on the server."""

    PENDING = "Pending"
    READY = "Ready"
    UNREACHABLE = "Unreachable"
    DELETING = "Deleting"


class Connection(base.ApiModel):
    """Where the operator's own role on the server is described."""

    secret_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """A Secret in the operator's namespace."""
    key: str = Field(default="DATABASE_URL", pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)
    """Its key holding a libpq URL for a role with CREATEROLE and CREATEDB (the
    operator's role on that server, as ``DATABASE_URL`` is on the default one)."""
    public_host: str | None = Field(default=None, max_length=253)
    """The host tenants' applications connect to, written into their Secrets
    (default: the URL's host)."""


class Capacity(base.ApiModel):
    """How many tenants placement may put on the server (unset: no limit)."""

    tenants: int | None = Field(default=None, ge=0, le=1_000_000)
    """All tenants together."""
    schema_tenants: int | None = Field(default=None, ge=0, le=1_000_000, alias="schema")
    """``schema`` tenants."""
    database_tenants: int | None = Field(default=None, ge=0, le=100_000, alias="database")
    """``database`` tenants (each one is a database on the server)."""
    shared_tenants: int | None = Field(default=None, ge=0, le=1_000_000, alias="shared")
    """``shared`` tenants."""


class DatabaseServerSpec(base.ApiModel):
    """A PostgreSQL server the operator provisions tenants on."""

    connection: Connection
    """How the operator reaches the server."""
    capacity: Capacity | None = None
    """At most this many tenants; a Tenant that would exceed it is refused (``Ready=False``,
    reason ``ServerFull``) and nothing is created."""
    unschedulable: bool = False
    """Placement by ``serverSelector`` skips the server (like a cordoned node); a
    ``serverRef`` naming it still works, and its tenants stay."""


class PlacedTenants(base.ApiModel):
    """Tenants placed on the server, by isolation mode."""

    total: int = 0
    schema_tenants: int = Field(default=0, alias="schema")
    database_tenants: int = Field(default=0, alias="database")
    shared_tenants: int = Field(default=0, alias="shared")


class DatabaseServerStatus(conditions.ObservedStatus):
    """What the operator sees of the server."""

    phase: Phase | None = None
    """A summary of the conditions."""
    reachable: bool | None = None
    """Whether the operator's last connection attempt succeeded."""
    server_version: str | None = None
    """PostgreSQL's ``server_version``."""
    tenants: PlacedTenants | None = None
    """Tenants placed on it (from the placement directory)."""


DATABASE_SERVER = resources.ResourceKind(
    kind="DatabaseServer",
    plural="databaseservers",
    short_names=("dbs",),
    spec=DatabaseServerSpec,
    status=DatabaseServerStatus,
    description="A PostgreSQL server tenants can be placed on (cluster-scoped).",
    printer_columns=(
        resources.PrinterColumn("Phase", ".status.phase"),
        resources.PrinterColumn("Tenants", ".status.tenants.total", type="integer"),
        resources.PrinterColumn("Version", ".status.serverVersion"),
        resources.PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    root_validations=(
        resources.Validation(
            rule=f"self.metadata.name != '{DEFAULT}'",
            message=f"'{DEFAULT}' is the operator's own server",
        ),
    ),
    cluster_scoped=True,
)
