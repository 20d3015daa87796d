"""Dependency order and selection of seeders (pure logic)."""

import pytest

from tenantdb.core.seeding import declarations, errors, ordering

PRODUCTION = declarations.Profile.PRODUCTION
DEVELOPMENT = declarations.Profile.DEVELOPMENT


def seeder(
    name: str, *depends_on: str, profile: declarations.Profile = PRODUCTION
) -> declarations.Seeder:
    return declarations.declare(
        name=name,
        version=1,
        profile=profile,
        depends_on=depends_on,
        description="",
        kind=declarations.Kind.PYTHON,
        source=f"{name}.py",
        checksum="0" * 64,
        seed=lambda ctx: None,
        unseed=lambda ctx: None,
    )


def names(seeders: list[declarations.Seeder]) -> list[str]:
    return [s.name for s in seeders]


def test_dependencies_come_first_and_ties_are_broken_by_name() -> None:
    ordered = ordering.order(
        [seeder("settings", "plans"), seeder("roles"), seeder("plans"), seeder("audit", "roles")]
    )
    assert names(ordered) == ["plans", "roles", "audit", "settings"]


def test_the_order_does_not_depend_on_the_order_of_discovery() -> None:
    seeders = [seeder("c", "a"), seeder("b"), seeder("a"), seeder("d", "b", "c")]
    assert names(ordering.order(seeders)) == names(ordering.order(list(reversed(seeders))))
    assert names(ordering.order(seeders)) == ["a", "b", "c", "d"]


def test_a_cycle_is_refused_and_named() -> None:
    with pytest.raises(errors.DependencyCycle) as caught:
        ordering.order([seeder("a", "c"), seeder("b", "a"), seeder("c", "b"), seeder("d")])
    assert caught.value.cycle == ("a", "c", "b", "a")
    assert "a -> c -> b -> a" in str(caught.value)
    assert caught.value.reason == "InvalidSeeder"


def test_an_unknown_dependency_is_refused() -> None:
    with pytest.raises(errors.InvalidSeeder, match="'ghost', which does not exist"):
        ordering.order([seeder("a", "ghost")])


def test_two_seeders_with_one_name_are_refused() -> None:
    with pytest.raises(errors.InvalidSeeder, match="both named 'a'"):
        ordering.order([seeder("a"), seeder("a")])


def test_production_cannot_depend_on_development() -> None:
    with pytest.raises(errors.InvalidSeeder, match="cannot depend on development seeder"):
        ordering.order([seeder("prod", "dev"), seeder("dev", profile=DEVELOPMENT)])


ALL = ordering.order(
    [
        seeder("roles"),
        seeder("plans"),
        seeder("settings", "plans"),
        seeder("users", "roles", profile=DEVELOPMENT),
        seeder("crm", "users", profile=DEVELOPMENT),
        seeder("history", "crm", profile=DEVELOPMENT),
    ]
)


def test_the_production_profile_selects_production_seeders_only() -> None:
    assert names(ordering.select(ALL, PRODUCTION, ())) == ["plans", "roles", "settings"]


def test_the_development_profile_selects_everything() -> None:
    assert names(ordering.select(ALL, DEVELOPMENT, ())) == names(ALL)


def test_only_brings_its_dependencies_along() -> None:
    assert names(ordering.select(ALL, DEVELOPMENT, ["crm"])) == ["roles", "users", "crm"]
    assert names(ordering.select(ALL, PRODUCTION, ["settings"])) == ["plans", "settings"]


def test_development_seeders_cannot_be_asked_for_under_production() -> None:
    with pytest.raises(errors.InvalidSelection, match="'crm', 'users' are development"):
        ordering.select(ALL, PRODUCTION, ["crm"])


def test_unknown_names_are_refused() -> None:
    with pytest.raises(errors.UnknownSeeder, match="'nope'"):
        ordering.select(ALL, DEVELOPMENT, ["nope", "roles"])


def test_dependents_closure_follows_chains() -> None:
    assert ordering.dependents_closure(ALL, ["users"]) == {"users", "crm", "history"}
    assert ordering.dependents_closure(ALL, ["history"]) == {"history"}
