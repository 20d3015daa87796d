"""``pg_restore --file=-`` output, split into statements and COPY blocks, never run by psql.

The script is lexed, not trusted: statements end at a ``;`` outside quotes
('...', E'...', "...", dollar quotes) and comments; a ``COPY ... FROM stdin;``
statement is followed by its rows up to the line ``\\.``, which are passed on
untouched in large chunks (``framing.Buffered.copy_block``). A line starting
with a backslash between statements is a psql meta-command: ``\\restrict`` and
``\\unrestrict`` (which pg_restore writes) are dropped, any other is refused,
since nothing here is a psql (an archive's text that only looks like one,
inside a function body, a comment or a row, is text like any other).

Whatever this yields is run on a session as the target's owner role, so an
archive that fools the lexer can at worst run what that role could run.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tenantdb.core import errors
from tenantdb.core.backups import framing

DROPPED_META = ("\\restrict", "\\unrestrict")
_COPY = re.compile(r"COPY\s.*\sFROM\s+stdin\s*;\s*\Z", re.IGNORECASE | re.DOTALL)
_SPECIAL = re.compile(r"""[;'"$]|--|/\*""")
_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_WORD_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\uffff]")


@dataclass(frozen=True)
class Statement:
    """One SQL statement, with its ``;``."""

    text: str

    @property
    def is_copy(self) -> bool:
        """A ``COPY ... FROM stdin``: its rows follow in the source."""
        return bool(_COPY.match(self.text))


def statements(source: framing.Buffered) -> Iterator[Statement]:
    """The script's statements in order; after a COPY statement is yielded, the caller
    reads its rows from ``source`` (``copy_block``) before asking for the next."""
    lexer = _Lexer()
    while line := source.readline():
        text = line.decode()
        if lexer.idle and text.startswith("\\"):
            _meta(text)
            continue
        if lexer.idle and (not text.strip() or text.lstrip().startswith("--")):
            continue
        yield from lexer.feed(text)
    if not lexer.idle:
        raise errors.BackupError("the archive's SQL ends inside a statement")


def _meta(line: str) -> None:
    command = line.split(None, 1)[0] if line.strip() else line
    if command not in DROPPED_META:
        raise errors.BackupError(f"the archive holds a psql meta-command {command!r}: refused")


class _Lexer:
    """Where we are in the text: in a statement, a quote, a dollar quote or a comment."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.quote: str | None = None
        """The closing delimiter we are inside: ``'``, ``"``, a ``$tag$``, or ``*/``."""
        self.escapes = False
        """Inside an E'...' string (backslash escapes)."""
        self.depth = 0
        """Nesting of block comments."""
        self.started = False
        """Whether ``pending`` holds more than whitespace."""

    @property
    def idle(self) -> bool:
        """Between statements (nothing pending)."""
        return self.quote is None and not self.started

    def feed(self, line: str) -> Iterator[Statement]:
        position = 0
        start = 0
        while position < len(line):
            if self.quote is not None:
                position = self._close(line, position)
                continue
            found = _SPECIAL.search(line, position)
            if found is None:
                break
            mark, position = found.group(), found.end()
            if mark == ";":
                self.pending.append(line[start:position])
                text = "".join(self.pending).strip()
                self.pending = []
                self.started = False
                start = position
                if text:
                    yield Statement(text)
            elif mark == "--":
                break
            elif mark == "/*":
                self.quote, self.depth = "*/", 1
            elif mark == "$":
                position = self._dollar(line, found.start(), position)
            else:
                before = line[found.start() - 1] if found.start() > 0 else ""
                prefix = before in ("e", "E") and not _word_before(line, found.start() - 1)
                self.escapes = mark == "'" and prefix
                self.quote = mark
        rest = line[start:]
        self.pending.append(rest)
        self.started = self.started or bool(rest.strip())

    def _dollar(self, line: str, at: int, after: int) -> int:
        if at > 0 and _WORD_CHAR.match(line[at - 1]):
            return after  # part of an identifier (a$b) or a parameter ($1)
        tag = _DOLLAR.match(line, at)
        if tag is None:
            return after
        self.quote = tag.group()
        return tag.end()

    def _close(self, line: str, position: int) -> int:
        """Past the end of the quote or comment we are in, or to the end of the line."""
        quote = self.quote
        assert quote is not None
        if quote == "*/":
            return self._comment(line, position)
        while True:
            end = line.find(quote, position)
            if end < 0:
                return len(line)
            if self.escapes and _escaped(line, end):
                position = end + 1
                continue
            if quote in ("'", '"') and line.startswith(quote * 2, end):
                position = end + 2
                continue
            self.quote = None
            return end + len(quote)

    def _comment(self, line: str, position: int) -> int:
        while True:
            close, nested = line.find("*/", position), line.find("/*", position)
            if close < 0 and nested < 0:
                return len(line)
            if nested >= 0 and (close < 0 or nested < close):
                self.depth += 1
                position = nested + 2
                continue
            self.depth -= 1
            position = close + 2
            if self.depth == 0:
                self.quote = None
                return position


def _escaped(line: str, at: int) -> bool:
    """Whether the character at ``at`` follows an odd number of backslashes."""
    count = 0
    while at - count - 1 >= 0 and line[at - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _word_before(line: str, at: int) -> bool:
    """Whether ``line[at]`` (an ``E``) continues a word (then it is not a prefix)."""
    return at > 0 and bool(_WORD_CHAR.match(line[at - 1]))
