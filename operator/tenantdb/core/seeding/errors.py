"""The errors of seeding, each with the ``reason`` the controllers report.

Owns the ``SeedingError`` family only; the base class and the driver-error
translation live in ``tenantdb.core.errors`` and ``tenantdb.core.connecting``.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tenantdb.core import errors

if TYPE_CHECKING:
    from tenantdb.core.seeding import reports


class SeedingError(errors.TenantDBError):
    """Base of every seeding error."""

    reason = "SeedFailed"


class InvalidSeeder(SeedingError):
    """A seeder's declaration is wrong: a missing field, a bad header, a duplicate name,
    an unknown dependency, or a production seeder depending on development data."""

    reason = "InvalidSeeder"


class DependencyCycle(InvalidSeeder):
    """Seeders depend on each other in a circle; none of them can go first."""

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__("seeders depend on each other in a cycle: " + " -> ".join(cycle))
        self.cycle = tuple(cycle)


class UnknownSeeder(SeedingError):
    """A seeder was asked for by name but no seeder has that name."""

    reason = "UnknownSeeder"


class InvalidSelection(SeedingError):
    """The request names a development seeder under the ``production`` profile."""

    reason = "InvalidSeedSelection"


class ForbiddenInProduction(SeedingError):
    """Development data was asked for where the operator runs in production.

    Raised before anything is written.
    """

    reason = "ForbiddenInProduction"

    def __init__(self, message: str, seeders: Sequence[str]) -> None:
        super().__init__(message)
        self.seeders = tuple(seeders)


class TenantNotFound(SeedingError):
    """No live tenant has that UID (or name)."""

    reason = "TenantNotFound"


class SeedFailed(SeedingError):
    """One seeder failed; its transaction is rolled back, earlier seeders' data stays.

    ``report`` says what ran before the failure; ``sqlstate`` is the server's
    code when the database refused a statement.
    """

    reason = "SeedFailed"

    def __init__(
        self,
        message: str,
        seeder: str,
        report: "reports.SeedReport",
        sqlstate: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.seeder = seeder
        self.report = report
        self.sqlstate = sqlstate
        self.permanent = not transient


class UnseedFailed(SeedFailed):
    """Removing one development seeder's data failed; its transaction is rolled back."""

    reason = "UnseedFailed"
