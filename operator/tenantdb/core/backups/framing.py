"""The ``tenantdb-rows`` payload: one shared tenant's rows, table by table, streamed.

Layout::

    tenantdb-rows 1\\n
    {"table": "leads", "columns": ["id", "company_id", ...], "rows": 2}\\n
    <COPY text-format rows>
    \\.\\n
    ... one such block per table, in foreign-key order ...
    {"end": true}\\n

The rows are ``COPY (SELECT columns FROM table) TO STDOUT`` output; a text-format
row is never the line ``\\.``, so that line ends the block. ``tenant_id`` is in no
block: a restore's rows get the new tenant's from the column's default.
``Buffered`` reads this and ``pg_restore``'s SQL output alike: lines, and COPY
blocks passed on in large chunks without being split into rows.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenantdb.core import errors
from tenantdb.core.backups import programs

MAGIC = b"tenantdb-rows 1\n"
END_OF_DATA = b"\\.\n"
PAYLOAD = "tenantdb-rows"


@dataclass(frozen=True)
class Block:
    """One table's header."""

    table: str
    columns: list[str]
    rows: int


def header(block: Block) -> bytes:
    """A block's header line."""
    fields = {"table": block.table, "columns": block.columns, "rows": block.rows}
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def trailer() -> bytes:
    """The line after the last block."""
    return b'{"end":true}\n'


class Buffered:
    """A source read in large chunks, as lines or as COPY blocks."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buffer = bytearray()
        self._eof = False

    def readline(self) -> bytes:
        """The next line with its newline (the rest at the end; b"" once all is read)."""
        start = 0
        while (end := self._buffer.find(b"\n", start)) < 0:
            start = len(self._buffer)
            if not self._fill():
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def copy_block(self, write: Callable[[bytes], object]) -> None:
        """Pass the rows up to the line ``\\.`` (consumed) to ``write``, in chunks."""
        while True:
            if self._buffer.startswith(END_OF_DATA):
                del self._buffer[: len(END_OF_DATA)]
                return
            end = self._buffer.find(b"\n" + END_OF_DATA)
            if end >= 0:
                write(bytes(self._buffer[: end + 1]))
                del self._buffer[: end + 1 + len(END_OF_DATA)]
                return
            cut = self._buffer.rfind(b"\n")
            if cut >= 0:
                write(bytes(self._buffer[: cut + 1]))
                del self._buffer[: cut + 1]
            if not self._fill():
                if bytes(self._buffer) == END_OF_DATA[:-1]:  # the last line, unterminated
                    self._buffer.clear()
                    return
                raise errors.BackupError("the archive ends inside a table's rows")

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._read(programs.CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True


def read_header(source: Buffered) -> Block | None:
    """The next block's header, or None after the last one."""
    line = source.readline()
    try:
        fields: dict[str, Any] = json.loads(line)
    except ValueError as exc:
        raise errors.BackupError("the archive's rows are not in the tenantdb-rows layout") from exc
    if fields.get("end") is True:
        return None
    table, columns, rows = fields.get("table"), fields.get("columns"), fields.get("rows")
    if not isinstance(table, str) or not isinstance(columns, list) or not isinstance(rows, int):
        raise errors.BackupError("a block header of the archive is malformed")
    if not all(isinstance(column, str) for column in columns):
        raise errors.BackupError(f"the column list of {table} in the archive is malformed")
    return Block(table, [str(c) for c in columns], rows)


def read_magic(source: Buffered) -> None:
    """The first line says the layout and its version."""
    if source.readline() != MAGIC:
        raise errors.BackupError("the archive's rows are not in the tenantdb-rows 1 layout")
