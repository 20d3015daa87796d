"""What every ``tenantdb`` command shares on the terminal and on the way in.

Settings and a prepared server from the environment (as the operator reads
them), errors as one line instead of a traceback, who is running the
command, aligned tables, and a progress bar that redraws one line on a
terminal and writes occasional lines into logs.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tenantdb import settings as settings_
    from tenantdb.core import commands

BAR_WIDTH = 24


def usage(parser: argparse.ArgumentParser) -> int:
    """A command group run without a subcommand: show its help."""
    parser.print_help(sys.stderr)
    return 2


def settings() -> settings_.Settings:
    """The operator's settings, read now from the environment."""
    from tenantdb import settings as settings_module  # noqa: PLC0415

    return settings_module.Settings.from_environment()


@contextmanager
def server(max_connections: int = 8) -> Iterator[commands.Server]:
    """The configured PostgreSQL server, its control schema prepared; closed afterwards."""
    from tenantdb.core import commands  # noqa: PLC0415 - drivers on demand

    prepared = commands.open_server(settings().database, "tenantdb-cli", max_connections)
    try:
        commands.prepare(prepared)
        yield prepared
    finally:
        prepared.close()


@contextmanager
def failures_reported(explain: Callable[[Exception], None] | None = None) -> Iterator[None]:
    """Print tenantdb's own errors as one line (reason and message) instead of a traceback."""
    from tenantdb.core import errors  # noqa: PLC0415

    try:
        yield
    except errors.TenantDBError as exc:
        print(f"tenantdb: {exc.reason}: {exc}", file=sys.stderr)
        if explain is not None:
            explain(exc)


def who() -> str:
    """Recorded in ledgers as who applied a change from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def table(
    header: list[str] | None,
    rows: list[list[str]],
    notes: list[str],
    note_title: str = "",
    out: TextIO | None = None,
    empty: str = "nothing to show",
) -> None:
    """Columns padded to their widest cell; a free-text note (one per row) goes last."""
    out = out or sys.stdout
    if not rows:
        print(empty, file=out)
        return
    every = [header, *rows] if header else rows
    titles = [note_title, *notes] if header else notes
    widths = [max(len(row[i]) for row in every) for i in range(len(every[0]))]
    for row, note in zip(every, titles, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join([*cells, note]).rstrip(), file=out)


class Bar:
    """A one-line bar on a terminal; plain lines (for logs) elsewhere."""

    def __init__(
        self, title: str, stream: TextIO | None = None, is_tty: Callable[[], bool] | None = None
    ) -> None:
        self.title = title
        self.stream = stream or sys.stderr
        self.live = (is_tty or self.stream.isatty)()
        self._drawn = False

    def draw(self, fraction: float, text: str) -> None:
        """Redraw the bar (terminals only)."""
        if not self.live:
            return
        filled = round(min(max(fraction, 0.0), 1.0) * BAR_WIDTH)
        line = f"\r{self.title} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {text}"
        self.stream.write(line.ljust(100)[:120])
        self.stream.flush()
        self._drawn = True

    def line(self, text: str) -> None:
        """A whole line, for logs (non-terminals only)."""
        if not self.live:
            self.stream.write(f"{self.title}: {text}\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
