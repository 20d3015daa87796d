"""Errors of the migration engine, one family under ``TenantDBError``.

The controllers turn them into conditions: ``reason`` is the condition
reason, ``permanent`` says whether retrying can help. A failing statement
on one tenant is *not* an error here: it is a ``Result`` with the
database's own message, recorded in the ledger, so a rollout can go on.
"""

from tenantdb.core import errors


class MigrationError(errors.TenantDBError):
    """Something about a migration stops it before or outside any tenant."""

    reason = "MigrationFailed"


class InvalidScript(MigrationError):
    """The script cannot be run safely as written (parse error, forbidden statement)."""

    reason = "InvalidSpec"


class DuplicateVersion(MigrationError):
    """Another Migration of the namespace, created earlier, has this version."""

    reason = "DuplicateVersion"


class ChecksumMismatch(MigrationError):
    """An applied version's text changed since it was applied (drift)."""

    reason = "ChecksumMismatch"


class TenantFailed(MigrationError):
    """A migration failed on the tenant being caught up; the database's message follows."""

    reason = "MigrationFailed"


class HeldBack(MigrationError):
    """The tenant lacks a version its namespace's Migrations define, and that
    Migration cannot run now (halted, invalid); retried until it can."""

    reason = "WaitingForMigration"
    permanent = False


class TenantBusy(MigrationError):
    """Another worker (replica, CLI) holds the tenant's lock right now; retry soon."""

    reason = "TenantBusy"
    permanent = False


class Waiting(MigrationError):
    """A transient condition (lock timeout, an earlier version in flight); retry soon."""

    reason = "MigrationPending"
    permanent = False
