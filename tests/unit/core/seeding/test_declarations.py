"""Declarations are checked when a seeder is loaded, before anything runs."""

from typing import Any

import pytest

from tenantdb.core.seeding import declarations, errors


def declare(**overrides: Any) -> declarations.Seeder:
    fields: dict[str, Any] = {
        "name": "plans",
        "version": 1,
        "profile": "production",
        "depends_on": (),
        "description": "Default plans.\nMore text.",
        "kind": declarations.Kind.PYTHON,
        "source": "plans.py",
        "checksum": "0" * 64,
        "seed": lambda ctx: None,
        "unseed": None,
        **overrides,
    }
    return declarations.declare(**fields)


def test_a_good_declaration_becomes_a_seeder() -> None:
    seeder = declare(depends_on=["roles"])
    assert seeder.profile is declarations.Profile.PRODUCTION
    assert seeder.depends_on == ("roles",)
    assert seeder.description == "Default plans."
    assert not seeder.development


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Plans", "must be 1-63 lowercase"),
        ("name", "x" * 64, "must be 1-63 lowercase"),
        ("name", 3, "must be 1-63 lowercase"),
        ("version", 0, "positive integer"),
        ("version", "1", "positive integer"),
        ("version", True, "positive integer"),
        ("profile", "prod", "must be one of production, development"),
        ("depends_on", "roles", "list of seeder names"),
        ("depends_on", ["Roles"], "is not a seeder name"),
        ("depends_on", ["plans"], "cannot depend on itself"),
        ("depends_on", ["roles", "roles"], "listed twice"),
    ],
)
def test_bad_declarations_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(errors.InvalidSeeder, match=message):
        declare(**{field: value})


def test_development_seeders_must_say_how_to_remove_their_data() -> None:
    with pytest.raises(errors.InvalidSeeder, match="how to remove its data"):
        declare(profile="development", unseed=None)
    assert declare(profile="development", unseed=lambda ctx: None).development
