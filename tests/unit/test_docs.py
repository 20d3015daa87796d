"""Documentation that claims something about the tests stays true."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def assert_every_test_is_named(suite: str, doc: str) -> None:
    """Each test function of ``tests/<suite>`` is named (in backquotes) in ``docs/<doc>``."""
    table = (ROOT / "docs" / doc).read_text()
    for path in sorted((ROOT / "tests" / suite).glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                assert f"`{node.name}`" in table, f"{path.name}::{node.name} missing from {doc}"


def test_every_security_test_is_in_the_attack_table() -> None:
    assert_every_test_is_named("security", "security.md")


def test_the_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    opening = "\n".join(lines[:6])
    assert "make dev" in opening and "make test" in opening


def test_ci_runs_exactly_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script if line.strip() and not line.startswith("#")]
    assert commands[-1] == "make test"


def test_every_chaos_test_is_in_the_reliability_table() -> None:
    assert_every_test_is_named("chaos", "reliability.md")
