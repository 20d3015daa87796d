"""What a seeder is once discovered: its declaration, its source's checksum, its code.

Owns the ``Seeder`` record and the checks every declaration must pass
(name pattern, version, profile). It runs nothing and reads no file.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from tenantdb.api.tenants import SeedProfile
from tenantdb.core.seeding import errors

if TYPE_CHECKING:
    from tenantdb.core.seeding import context

Profile = SeedProfile
"""``production`` seeders are safe everywhere; ``development`` ones never run in production."""

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""Seeder names: lowercase words joined by ``_``, at most 63 characters."""

SeedFunction = Callable[["context.Context"], None]
"""What a seeder runs: writes through the context, inside the tenant, in one transaction."""


class Kind(StrEnum):
    """How a seeder is written."""

    PYTHON = "python"
    SQL = "sql"


@dataclass(frozen=True)
class Seeder:
    """One seeder: its declaration, where it came from, and what it runs."""

    name: str
    """Unique among the seeders of one directory; the key of the seed history."""
    version: int
    """Bumped by the author when the seeder must run again on every tenant."""
    profile: Profile
    """Where it may run: ``production`` anywhere, ``development`` never in production."""
    depends_on: tuple[str, ...]
    """Seeders that must have run first (by name)."""
    description: str
    """One line for ``tenantdb seeders list``."""
    kind: Kind
    """``python`` (a module on SQLAlchemy Core) or ``sql`` (a file with a header)."""
    source: str
    """The file name inside the seeders directory."""
    checksum: str
    """SHA-256 of the file; recorded in the history to spot edits without a version bump."""
    seed: SeedFunction
    """Writes the seeder's rows."""
    unseed: SeedFunction | None
    """Removes exactly what ``seed`` added; required of development seeders."""

    @property
    def development(self) -> bool:
        """Whether the environment guard applies to this seeder."""
        return self.profile is Profile.DEVELOPMENT


def declare(
    *,
    name: object,
    version: object,
    profile: object,
    depends_on: object,
    description: str,
    kind: Kind,
    source: str,
    checksum: str,
    seed: SeedFunction,
    unseed: SeedFunction | None,
) -> Seeder:
    """Check a declaration read from a file and build the ``Seeder``."""
    where = f"seeder {source}"
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise errors.InvalidSeeder(
            f"{where}: name {name!r} must be 1-63 lowercase letters, digits or '_', "
            "starting with a letter"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise errors.InvalidSeeder(f"{where}: version {version!r} must be a positive integer")
    try:
        parsed_profile = Profile(str(profile))
    except ValueError:
        choices = ", ".join(p.value for p in Profile)
        raise errors.InvalidSeeder(
            f"{where}: profile {profile!r} must be one of {choices}"
        ) from None
    dependencies = _dependencies(where, name, depends_on)
    if parsed_profile is Profile.DEVELOPMENT and unseed is None:
        raise errors.InvalidSeeder(
            f"{where}: a development seeder must say how to remove its data (unseed)"
        )
    return Seeder(
        name=name,
        version=version,
        profile=parsed_profile,
        depends_on=dependencies,
        description=description.strip().splitlines()[0] if description.strip() else "",
        kind=kind,
        source=source,
        checksum=checksum,
        seed=seed,
        unseed=unseed,
    )


def _dependencies(where: str, name: str, depends_on: object) -> tuple[str, ...]:
    if isinstance(depends_on, str) or not isinstance(depends_on, Sequence):
        raise errors.InvalidSeeder(f"{where}: dependencies must be a list of seeder names")
    names = tuple(depends_on)
    for dependency in names:
        if not isinstance(dependency, str) or not NAME.fullmatch(dependency):
            raise errors.InvalidSeeder(f"{where}: {dependency!r} is not a seeder name")
    if name in names:
        raise errors.InvalidSeeder(f"{where}: a seeder cannot depend on itself")
    if len(set(names)) != len(names):
        raise errors.InvalidSeeder(f"{where}: a dependency is listed twice")
    return names
