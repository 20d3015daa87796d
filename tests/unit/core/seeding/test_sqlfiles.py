"""The ``.sql`` seeder format: header, statements, optional unseed part."""

import hashlib
from unittest import mock

import pytest

from tenantdb.core.seeding import declarations, errors, sqlfiles

GOOD = """-- name: settings
-- version: 2
-- profile: development
-- depends: roles, plans
-- description: Default settings.

INSERT INTO settings (key) VALUES ('a') ON CONFLICT DO NOTHING;
INSERT INTO settings (key) VALUES ('b') ON CONFLICT DO NOTHING;

-- unseed
DELETE FROM settings WHERE key IN ('a', 'b');
"""


def test_the_header_declares_the_seeder() -> None:
    seeder = sqlfiles.parse("settings.sql", GOOD)
    assert (seeder.name, seeder.version, seeder.profile) == (
        "settings",
        2,
        declarations.Profile.DEVELOPMENT,
    )
    assert seeder.depends_on == ("roles", "plans")
    assert seeder.description == "Default settings."
    assert seeder.kind is declarations.Kind.SQL
    assert seeder.checksum == hashlib.sha256(GOOD.encode()).hexdigest()


def test_seed_and_unseed_run_their_own_part_of_the_file() -> None:
    seeder = sqlfiles.parse("settings.sql", GOOD)
    ctx = mock.Mock()
    seeder.seed(ctx)
    (seed_script,), _ = ctx.execute_script.call_args
    assert "INSERT INTO settings (key) VALUES ('b')" in seed_script
    assert "DELETE" not in seed_script
    assert seeder.unseed is not None
    seeder.unseed(ctx)
    (unseed_script,), _ = ctx.execute_script.call_args
    assert unseed_script == "DELETE FROM settings WHERE key IN ('a', 'b');"


def test_production_files_need_no_unseed_part() -> None:
    text = "-- name: plans\n-- version: 1\n-- profile: production\nSELECT 1;\n"
    seeder = sqlfiles.parse("plans.sql", text)
    assert seeder.unseed is None
    assert seeder.depends_on == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: a\n-- profile: production\nSELECT 1;", "lacks version"),
        (
            "SELECT 1;\n-- name: a\n-- version: 1\n-- profile: production",
            "lacks name, version, profile",
        ),
        (
            "-- name: a\n-- version: 1\n-- profile: production\n-- verison: 2\nSELECT 1;",
            "unknown header 'verison'",
        ),
        ("-- name: a\n-- name: b\n-- version: 1\n-- profile: production\nSELECT 1;", "given twice"),
        ("-- name: a\n-- version: one\n-- profile: production\nSELECT 1;", "positive integer"),
        ("-- name: a\n-- version: 1\n-- profile: production\n", "no statements"),
        ("-- name: a\n-- version: 1\n-- profile: development\nSELECT 1;", "how to remove its data"),
        (
            "-- name: a\n-- version: 1\n-- profile: development\nSELECT 1;\n-- unseed\nSELECT 2;\n-- unseed\n",
            "only one '-- unseed' line",
        ),
    ],
)
def test_bad_files_are_refused_with_the_file_name(text: str, message: str) -> None:
    with pytest.raises(errors.InvalidSeeder, match=message) as caught:
        sqlfiles.parse("bad.sql", text)
    assert "bad.sql" in str(caught.value)
