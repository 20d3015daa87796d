"""What every benchmark shares: a PostgreSQL server and the results page.

Benchmarks are not tests: they print figures and, with ``--write``,
replace their own section of ``docs/benchmarks.md``. The machines are
shared and noisy, so every benchmark alternates the measured tool and its
baseline, repeats, and reports medians and ratios, never a single time.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
if str(REPO / "operator") not in sys.path:
    sys.path.insert(0, str(REPO / "operator"))

from tenantdb.devenv import postgres  # noqa: E402


@contextlib.contextmanager
def database() -> Iterator[str]:
    """``DATABASE_URL`` if set, else a fresh embedded server for the run."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with (
        tempfile.TemporaryDirectory(prefix="tenantdb-bench-") as directory,
        postgres.EmbeddedPostgres(Path(directory)) as server,
    ):
        yield server.url


def median(values: Sequence[float]) -> float:
    """The median, the one figure quoted for noisy machines."""
    return statistics.median(values)


def machine() -> str:
    """A one-line description of where the figures were measured."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def write_section(heading: str, section: str) -> None:
    """Replace ``heading``'s section of docs/benchmarks.md (or append it)."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        rest = text[end + 1 :] if end != -1 else ""
        text = text[:start] + section.rstrip("\n") + ("\n\n" + rest if rest else "\n")
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text.rstrip("\n") + "\n")
