"""Script files, checksums and the manifests rendered from them."""

from pathlib import Path

import pytest
import yaml

from tenantdb.api import migrations as api
from tenantdb.core.migrations import errors, scripts

REPO = Path(__file__).resolve().parents[4]


def test_checksum_ignores_line_endings_and_trailing_blanks_but_not_content() -> None:
    base = scripts.checksum("CREATE TABLE a (id int);\nCREATE INDEX i ON a (id);")
    assert scripts.checksum("\nCREATE TABLE a (id int);  \r\nCREATE INDEX i ON a (id);\n\n") == base
    assert scripts.checksum("CREATE TABLE a (id bigint);\nCREATE INDEX i ON a (id);") != base
    assert scripts.checksum("CREATE TABLE a (id int);\n CREATE INDEX i ON a (id);") != base


def test_file_with_options_and_down(tmp_path: Path) -> None:
    path = tmp_path / "0007_leads_email_index.sql"
    path.write_text(
        "-- description: Find leads by email\n"
        "-- migrate:up transaction:false lock-timeout:10s\n"
        "CREATE INDEX CONCURRENTLY leads_email ON leads (email);\n"
        "-- migrate:down\n"
        "DROP INDEX CONCURRENTLY leads_email;\n"
    )
    script = scripts.parse_file(path)
    assert script.version == 7
    assert script.name == "0007_leads_email_index"
    assert script.description == "Find leads by email"
    assert not script.transactional
    assert script.lock_timeout == "10s"
    assert script.up == "CREATE INDEX CONCURRENTLY leads_email ON leads (email);"
    assert script.down == "DROP INDEX CONCURRENTLY leads_email;"


def test_description_defaults_to_the_file_name_words(tmp_path: Path) -> None:
    path = tmp_path / "12_shared_notes.sql"
    path.write_text("-- migrate:up scope:shared\nCREATE TABLE notes (tenant_id uuid);\n")
    script = scripts.parse_file(path)
    assert (script.description, script.scope, script.down) == (
        "shared notes",
        api.Scope.SHARED,
        None,
    )


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("1_a.sql", "CREATE TABLE a (id int);", "expected one '-- migrate:up'"),
        ("1_a.sql", "-- migrate:down\nDROP TABLE a;\n-- migrate:up\nSELECT 1;", "expected one"),
        ("1_a.sql", "-- migrate:up\n-- migrate:down\nDROP TABLE a;", "up section is empty"),
        ("1_a.sql", "-- migrate:up transaction:maybe\nSELECT 1;", "unknown option"),
        ("first.sql", "-- migrate:up\nSELECT 1;", "<version>_<words>.sql"),
    ],
)
def test_bad_files_are_refused_with_the_reason(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(errors.InvalidScript, match=problem):
        scripts.parse_file(tmp_path / name)


def test_duplicate_versions_in_a_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_a.sql").write_text("-- migrate:up\nSELECT 1;")
    (tmp_path / "01_b.sql").write_text("-- migrate:up\nSELECT 2;")
    with pytest.raises(errors.InvalidScript, match="version 1 is used by"):
        scripts.load_directory(tmp_path)


def test_sample_migrations_render_to_valid_manifests_with_the_same_checksum() -> None:
    loaded = scripts.load_directory(REPO / "migrations")
    assert [s.version for s in loaded] == sorted(s.version for s in loaded)
    assert any(not s.transactional for s in loaded)
    assert all(s.down for s in loaded)
    for script in loaded:
        assert script.problems() == []
        rendered = yaml.safe_load(yaml.safe_dump(scripts.manifest(script, "shop")))
        assert rendered["kind"] == "Migration"
        assert rendered["metadata"]["namespace"] == "shop"
        spec = api.MigrationSpec.model_validate(rendered["spec"])
        assert scripts.from_spec(rendered["metadata"]["name"], spec).checksum == script.checksum
        assert spec.transactional == script.transactional


def test_forbidden_statements_are_problems() -> None:
    script = scripts.Script(version=1, name="x", up="SET ROLE postgres;", down="COMMIT;")
    problems = script.problems()
    assert len(problems) == 2
    assert problems[0].startswith("up: line 1") and problems[1].startswith("down: line 1")
