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


class TenantGone(TenantDBError):
    """A repair found the tenant deleted (or retained) meanwhile: nothing to converge,
    and nothing may be made again behind its deletion."""

    reason = "TenantGone"


class InsufficientPrivilege(TenantDBError):
    """The operator's database role lacks a privilege it needs (said precisely)."""

    reason = "InsufficientPrivilege"


class BackupError(TenantDBError):
    """A dump, restore or verification cannot be done as asked (said precisely)."""

    reason = "BackupFailed"


class StorageError(TenantDBError):
    """Backup storage (a volume or S3) failed in a way no narrower class says."""

    reason = "StorageError"
    permanent = False


class StorageUnreachable(StorageError):
    """The object store cannot be reached or is failing (network, timeouts, 5xx)."""

    reason = "StorageUnreachable"


class StorageDenied(StorageError):
    """The storage refuses us: unwritable directory, forbidden, bad credentials, no bucket."""

    reason = "StorageDenied"
    permanent = True


class StorageFull(StorageError):
    """No space left: a full volume, a quota, a file-size limit."""

    reason = "StorageFull"


class ArchiveNotFound(StorageError):
    """No such object, or no complete archive (its manifest is missing) at a location."""

    reason = "ArchiveNotFound"
    permanent = True


class ArchiveError(TenantDBError):
    """An archive cannot be read back as it was written."""

    reason = "ArchiveInvalid"


class ArchiveCorrupt(ArchiveError):
    """The stored bytes do not match the manifest (size, sha256, format): truncated or damaged."""

    reason = "ArchiveCorrupt"


class ArchiveTampered(ArchiveError):
    """An authentication check failed: the header, a segment or the manifest was modified."""

    reason = "ArchiveTampered"


class EncryptionKeyMissing(ArchiveError):
    """The archive is encrypted (or must be) and no tenant key was given."""

    reason = "EncryptionKeyMissing"


class EncryptionKeyInvalid(ArchiveError):
    """A key does not open what it should: another tenant's key, or a wrong master key."""

    reason = "EncryptionKeyInvalid"


class ArchiveExists(ArchiveError):
    """A complete archive is already at the location a writer was given; it is kept."""

    reason = "ArchiveExists"
