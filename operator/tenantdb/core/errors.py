"""The error family of ``tenantdb.core``.

Callers catch these classes, never message text. Each carries a ``reason``
(a CamelCase word) that the controllers copy into conditions and events, and
a ``permanent`` flag saying whether retrying could help.
"""


class TenantDBError(Exception):
    """Base of every error tenantdb raises on purpose."""

    reason = "Error"
    permanent = True


class InvalidName(TenantDBError):
    """A name cannot become a safe PostgreSQL identifier."""

    reason = "InvalidName"


class ProvisioningError(TenantDBError):
    """Creating, changing or dropping a tenant failed."""

    reason = "ProvisioningFailed"


class DomainConflict(ProvisioningError):
    """Another tenant already has this domain."""

    reason = "DomainConflict"


class UnknownPlan(ProvisioningError):
    """The tenant names a plan the operator is not configured with."""

    reason = "UnknownPlan"


class DatabaseUnavailable(TenantDBError):
    """The server cannot be reached or is shutting down; retry later."""

    reason = "DatabaseUnavailable"
    permanent = False


class DatabaseError(TenantDBError):
    """The server refused a statement; the message is the server's own."""

    reason = "DatabaseError"

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class TenantBusy(TenantDBError):
    """Another operation holds the tenant's lock, or a tenant's session holds a lock the
    operator needs; retried later."""

    reason = "Busy"
    permanent = False


class InsufficientPrivilege(TenantDBError):
    """The operator's database role lacks a privilege it needs (said precisely)."""

    reason = "InsufficientPrivilege"


class BackupError(TenantDBError):
    """A dump, restore or verification cannot be done as asked (said precisely)."""

    reason = "BackupFailed"
