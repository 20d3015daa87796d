"""Discovery loads Python modules and ``.sql`` files from a directory."""

import textwrap
from pathlib import Path

import pytest

from tenantdb.core.seeding import declarations, discovering, errors

PYTHON_SEEDER = '''
"""Sample users for development."""

from . import _helpers

NAME = "users"
VERSION = {version}
PROFILE = "development"
DEPENDS_ON = ("roles",)


def seed(ctx):
    _helpers.CALLS.append("seed")


def unseed(ctx):
    _helpers.CALLS.append("unseed")
'''


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    write(tmp_path, "_helpers.py", "CALLS = []\n")
    write(tmp_path, "users.py", PYTHON_SEEDER.format(version=1))
    write(
        tmp_path, "roles.sql", "-- name: roles\n-- version: 1\n-- profile: production\nSELECT 1;\n"
    )
    write(tmp_path, "README.md", "not a seeder\n")
    write(tmp_path, ".hidden.py", "raise RuntimeError('never loaded')\n")
    return tmp_path


def test_python_modules_and_sql_files_are_found(directory: Path) -> None:
    seeders = {s.name: s for s in discovering.discover(directory)}
    assert sorted(seeders) == ["roles", "users"]
    users = seeders["users"]
    assert users.kind is declarations.Kind.PYTHON
    assert users.description == "Sample users for development."
    assert users.depends_on == ("roles",)
    assert users.source == "users.py"


def test_seeders_may_import_their_helpers_relatively(directory: Path) -> None:
    (users,) = [s for s in discovering.discover(directory) if s.name == "users"]
    users.seed(None)  # type: ignore[arg-type]
    assert users.unseed is not None
    users.unseed(None)  # type: ignore[arg-type]
    helpers = users.seed.__globals__["_helpers"]
    assert helpers.CALLS == ["seed", "unseed"]


def test_every_discovery_reads_the_files_again(directory: Path) -> None:
    first = {s.name: s for s in discovering.discover(directory)}["users"]
    write(directory, "users.py", PYTHON_SEEDER.format(version=2))
    second = {s.name: s for s in discovering.discover(directory)}["users"]
    assert (first.version, second.version) == (1, 2)
    assert first.checksum != second.checksum


def test_a_module_without_a_declaration_is_refused(directory: Path) -> None:
    write(directory, "broken.py", "NAME = 'broken'\n\ndef seed(ctx):\n    pass\n")
    with pytest.raises(errors.InvalidSeeder, match=r"broken.py does not define VERSION, PROFILE"):
        discovering.discover(directory)


def test_a_module_that_fails_to_import_is_refused(directory: Path) -> None:
    write(directory, "broken.py", "import not_a_module_anywhere\n")
    with pytest.raises(
        errors.InvalidSeeder, match=r"broken.py cannot be loaded: ModuleNotFoundError"
    ):
        discovering.discover(directory)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidSeeder, match="does not exist"):
        discovering.discover(tmp_path / "nowhere")


def test_the_repository_seeders_load_and_order() -> None:
    from tenantdb.core.seeding import ordering  # noqa: PLC0415

    repo = Path(__file__).resolve().parents[4] / "seeders"
    ordered = ordering.order(discovering.discover(repo))
    names = [s.name for s in ordered]
    assert set(names) >= {
        "roles",
        "plans",
        "settings",
        "sample_users",
        "sample_crm",
        "demo_history",
    }
    assert names.index("sample_users") > names.index("roles")
    assert names.index("demo_history") > names.index("sample_crm")
    assert all(s.unseed is not None for s in ordered if s.development)
