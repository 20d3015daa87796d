"""The environment guard refuses development data outside staging and development."""

import pytest

from tenantdb.core.seeding import declarations, errors, guarding
from tests.unit.core.seeding.test_ordering import ALL

PRODUCTION = declarations.Profile.PRODUCTION
DEVELOPMENT = declarations.Profile.DEVELOPMENT
PRODUCTION_ONLY = [s for s in ALL if not s.development]


@pytest.mark.parametrize("environment", ["staging", "development"])
def test_development_data_is_allowed_outside_production(environment: str) -> None:
    guarding.check(environment, DEVELOPMENT, ALL)


def test_production_seeders_run_everywhere() -> None:
    guarding.check("production", PRODUCTION, PRODUCTION_ONLY)


@pytest.mark.parametrize("environment", ["production", "prod", ""])
def test_development_seeders_are_refused_in_production(environment: str) -> None:
    with pytest.raises(errors.ForbiddenInProduction) as caught:
        guarding.check(environment, DEVELOPMENT, ALL)
    assert caught.value.reason == "ForbiddenInProduction"
    assert caught.value.seeders == ("users", "crm", "history")
    assert "users, crm, history" in str(caught.value)


def test_the_development_profile_is_refused_even_without_development_seeders() -> None:
    with pytest.raises(errors.ForbiddenInProduction):
        guarding.check("production", DEVELOPMENT, PRODUCTION_ONLY)
