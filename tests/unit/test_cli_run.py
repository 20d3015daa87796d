"""`tenantdb run`: which namespaces the operator is told to serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantdb import cli


@pytest.mark.parametrize(
    ("listed", "expected"),
    [(None, []), ("", []), ("team-a", ["team-a"]), (" team-a, team-b ,", ["team-a", "team-b"])],
)
def test_namespaces_from_the_environment(listed: str | None, expected: list[str]) -> None:
    assert cli.watched_namespaces(listed) == expected


def test_namespace_flag_repeats() -> None:
    args = cli._parser().parse_args(["run", "--namespace", "a", "--namespace", "b"])
    assert args.namespaces == ["a", "b"]


def test_crds_check_names_a_file_without_a_model(tmp_path: Path) -> None:
    docs = tmp_path / "reference.md"
    assert cli.main(["crds", "--out", str(tmp_path), "--docs", str(docs)]) == 0
    (tmp_path / "tenantdb.io_gone.yaml").write_text("kind: CustomResourceDefinition\n")
    assert cli.main(["crds", "--out", str(tmp_path), "--docs", str(docs), "--check"]) == 1
    assert cli.main(["crds", "--out", str(tmp_path), "--docs", str(docs)]) == 0
    assert not (tmp_path / "tenantdb.io_gone.yaml").exists()
    assert cli.main(["crds", "--out", str(tmp_path), "--docs", str(docs), "--check"]) == 0
