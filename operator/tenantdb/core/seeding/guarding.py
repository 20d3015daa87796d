"""The environment guard: development data never reaches a production tenant.

Owns one decision, made before anything is written: may these seeders run
in this environment? Unknown environment names count as production, so a
typo in configuration fails closed.
"""

from collections.abc import Sequence

from tenantdb.core.seeding import declarations, errors
from tenantdb.settings import Environment

PERMISSIVE = frozenset({Environment.STAGING.value, Environment.DEVELOPMENT.value})
"""Environments where development seeders may run."""


def check(
    environment: str, profile: declarations.Profile, selected: Sequence[declarations.Seeder]
) -> None:
    """Refuse development data outside staging and development; return quietly otherwise."""
    if environment in PERMISSIVE:
        return
    development = [s.name for s in selected if s.development]
    if profile is declarations.Profile.DEVELOPMENT or development:
        shown = f" ({', '.join(development)})" if development else ""
        raise errors.ForbiddenInProduction(
            f"the operator runs in the {environment!r} environment: development seed data"
            f"{shown} is refused there; use the production profile, or run the operator with"
            " TENANTDB_ENVIRONMENT=staging or development",
            development,
        )
