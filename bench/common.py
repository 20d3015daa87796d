"""What every benchmark shares: a durable PostgreSQL server, the operator's Server, the results page.

Benchmarks are not tests: they print figures and, with ``--write``,
replace their own section of ``docs/benchmarks.md``. The machines are
shared and noisy, so every benchmark alternates the measured tool and its
baseline, repeats, and reports medians and ratios, never a single time.

The tool under test runs as the operator does: as the non-superuser
operator role (``Database.operator_url``), with the tenants' owner roles
logging in with passwords derived from one credentials key. The
superuser's URL is for set-up and clean-up only. The embedded server is
started durable (fsync, synchronous_commit and full_page_writes on), unlike
the one the tests use, so commits cost what they cost in production.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import platform
import secrets
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
if str(REPO / "operator") not in sys.path:
    sys.path.insert(0, str(REPO / "operator"))

from tenantdb.core import commands  # noqa: E402
from tenantdb.devenv import postgres  # noqa: E402
from tenantdb.settings import DatabaseSettings  # noqa: E402

DURABILITY = (
    "SELECT current_setting('fsync'), current_setting('synchronous_commit'),"
    " current_setting('full_page_writes')"
)


@dataclasses.dataclass(frozen=True)
class Database:
    """The server of one benchmark run."""

    operator_url: str = dataclasses.field(repr=False)
    """The operator's role (no superuser): what the tool under test and the baselines use."""
    superuser_url: str = dataclasses.field(repr=False)
    """For set-up and clean-up only."""
    key_text: str = dataclasses.field(repr=False)
    """``TENANTDB_CREDENTIALS_KEY`` of the run: owner passwords derive from it."""

    @property
    def key(self) -> bytes:
        """The key bytes, as the operator derives them from ``key_text``."""
        return hashlib.sha256(self.key_text.encode()).digest()

    def settings(self, **changes: object) -> DatabaseSettings:
        """The operator's database settings for this server."""
        base = DatabaseSettings(url=self.operator_url, credentials_key=self.key)
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    def durability(self) -> str:
        """``fsync on, synchronous_commit on, full_page_writes on`` as the server says."""
        with psycopg.connect(self.operator_url) as conn:
            row = conn.execute(DURABILITY).fetchone()
        assert row is not None
        names = ("fsync", "synchronous_commit", "full_page_writes")
        return ", ".join(f"{name} {value}" for name, value in zip(names, row, strict=True))


@contextlib.contextmanager
def database(durable: bool = True) -> Iterator[Database]:
    """``DATABASE_URL`` (superuser) and ``TENANTDB_OPERATOR_URL`` if set, else a fresh
    embedded server for the run: durable unless asked (``durable=False``: the fast,
    crash-unsafe settings the tests use)."""
    key = secrets.token_urlsafe(32)
    if os.environ.get("DATABASE_URL"):
        superuser = os.environ["DATABASE_URL"]
        yield Database(os.environ.get("TENANTDB_OPERATOR_URL") or superuser, superuser, key)
        return
    with (
        tempfile.TemporaryDirectory(prefix="tenantdb-bench-") as directory,
        postgres.EmbeddedPostgres(Path(directory), durable=durable) as server,
    ):
        yield Database(server.operator_url, server.superuser_url(), key)


def open_server(db: Database, name: str, size: int, **changes: object) -> commands.Server:
    """The operator's Server (``commands.open_server``), its pool opened and filled
    before anything is timed, control and shared schemas prepared."""
    settings = db.settings(pool_min_size=size, pool_max_size=size, **changes)
    server = commands.open_server(settings, name, size)
    server.pool.wait()
    commands.prepare(server)
    return server


def median(values: Sequence[float]) -> float:
    """The median, the one figure quoted for noisy machines."""
    return statistics.median(values)


def machine() -> str:
    """A one-line description of where the figures were measured."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def read_section(heading: str) -> str | None:
    """``heading``'s section of docs/benchmarks.md as it stands (None if absent): up to
    the next heading of the same level or above."""
    text = DOCS.read_text() if DOCS.exists() else ""
    start = text.find(heading + "\n")
    if start == -1:
        return None
    level = heading.split(" ", 1)[0]
    ends = [text.find("\n" + "#" * n + " ", start + len(heading)) for n in range(1, len(level) + 1)]
    found = [end for end in ends if end != -1]
    return text[start : min(found) + 1 if found else len(text)].rstrip("\n") + "\n"


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
