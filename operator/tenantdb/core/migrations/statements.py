"""Splitting migration SQL into statements, and refusing what must not run in it.

``transactional: false`` migrations run one statement at a time (PostgreSQL
runs a multi-statement query as one implicit transaction, which ``CREATE
INDEX CONCURRENTLY`` refuses), so the text is split here. The lexer knows
quoted strings (``'...'``, ``E'...'``), quoted identifiers, dollar quoting,
nested block comments, line comments and ``BEGIN ATOMIC ... END`` bodies.

Statements that would escape the tenant scope or the engine's transaction
(``SET ROLE``, ``RESET ROLE``, ``COMMIT``, ``DISCARD``...) are refused before
anything runs. This is a guard against mistakes, not a sandbox: whoever may
create Migration objects is trusted with the database.
"""

import re
from dataclasses import dataclass

_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$]")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Statement:
    """One top-level statement and where it starts in the script (1-based line)."""

    text: str
    line: int

    @property
    def keywords(self) -> tuple[str, ...]:
        """The first few words, uppercased, outside comments and quotes."""
        return _leading_words(self.text, 4)


def split(script: str) -> list[Statement]:
    """Top-level statements without their trailing ``;``; comment-only parts are dropped."""
    statements: list[Statement] = []
    lexer = _Lexer(script)
    start = 0
    for end in lexer.boundaries():
        chunk = script[start:end]
        if _leading_words(chunk, 1):
            stripped = chunk.strip()
            offset = start + (len(chunk) - len(chunk.lstrip()))
            statements.append(Statement(stripped, script.count("\n", 0, offset) + 1))
        start = end + 1
    return statements


_FORBIDDEN: tuple[tuple[str, ...], ...] = (
    ("BEGIN",),
    ("START", "TRANSACTION"),
    ("COMMIT",),
    ("END",),
    ("ABORT",),
    ("PREPARE", "TRANSACTION"),
    ("SET", "ROLE"),
    ("SET", "SESSION", "ROLE"),
    ("SET", "LOCAL", "ROLE"),
    ("SET", "SESSION", "AUTHORIZATION"),
    ("SET", "LOCAL", "SESSION", "AUTHORIZATION"),
    ("SET", "SESSION", "SESSION", "AUTHORIZATION"),
    ("RESET", "ROLE"),
    ("RESET", "SESSION", "AUTHORIZATION"),
    ("RESET", "ALL"),
    ("DISCARD",),
)


def forbidden(script: str) -> list[str]:
    """Why each refused statement is refused (empty: the script may run)."""
    problems = []
    for statement in split(script):
        words = statement.keywords
        if words[:1] == ("ROLLBACK",):
            if words[1:2] != ("TO",):
                problems.append(f"line {statement.line}: ROLLBACK ends the engine's transaction")
            continue
        for prefix in _FORBIDDEN:
            if words[: len(prefix)] == prefix:
                what = " ".join(prefix)
                problems.append(
                    f"line {statement.line}: {what} is not allowed in a migration "
                    "(the engine owns the transaction and the tenant's role)"
                )
                break
    return problems


def _leading_words(text: str, count: int) -> tuple[str, ...]:
    words: list[str] = []
    lexer = _Lexer(text)
    for start, end in lexer.plain_spans():
        for match in _WORD.finditer(text, start, end):
            words.append(match.group().upper())
            if len(words) == count:
                return tuple(words)
    return tuple(words)


class _Lexer:
    """A single pass over SQL text that knows where code is and where it is not."""

    def __init__(self, text: str) -> None:
        self.text = text

    def plain_spans(self) -> list[tuple[int, int]]:
        """Spans of code outside comments, strings and quoted identifiers."""
        spans: list[tuple[int, int]] = []
        position = 0
        for start, end in self._skips():
            if start > position:
                spans.append((position, start))
            position = end
        if position < len(self.text):
            spans.append((position, len(self.text)))
        return spans

    def boundaries(self) -> list[int]:
        """Offsets of the top-level ``;`` plus the end of the text."""
        cuts: list[int] = []
        atomic_depth = 0
        for start, end in self.plain_spans():
            for index in range(start, end):
                char = self.text[index]
                if char.isalpha() and (index == 0 or not _IDENT_CHAR.match(self.text[index - 1])):
                    atomic_depth = self._track_atomic(index, end, atomic_depth)
                elif char == ";" and atomic_depth == 0:
                    cuts.append(index)
        cuts.append(len(self.text))
        return cuts

    def _track_atomic(self, index: int, end: int, depth: int) -> int:
        match = _WORD.match(self.text, index, end)
        word = match.group().upper() if match else ""
        if word == "ATOMIC" and self._previous_word(index) == "BEGIN":
            return depth + 1
        if depth and word == "CASE":
            return depth + 1
        if depth and word == "END":
            return depth - 1
        return depth

    def _previous_word(self, index: int) -> str:
        words = _WORD.findall(self.text[max(0, index - 32) : index])
        return words[-1].upper() if words else ""

    def _skips(self) -> list[tuple[int, int]]:
        """Spans of comments, string literals and quoted identifiers, in order."""
        text, length = self.text, len(self.text)
        skips: list[tuple[int, int]] = []
        i = 0
        while i < length:
            char = text[i]
            nxt = text[i + 1] if i + 1 < length else ""
            if char == "-" and nxt == "-":
                end = text.find("\n", i)
                end = length if end < 0 else end
            elif char == "/" and nxt == "*":
                end = self._block_comment_end(i)
            elif char == "'":
                escaped = i > 0 and text[i - 1] in "eE" and not _is_ident(text, i - 2)
                end = self._quoted_end(i, "'", backslashes=escaped)
            elif char == '"':
                end = self._quoted_end(i, '"', backslashes=False)
            elif char == "$" and not _is_ident(text, i - 1):
                tag = _DOLLAR_TAG.match(text, i)
                if not tag:
                    i += 1
                    continue
                close = text.find(tag.group(), tag.end())
                end = length if close < 0 else close + len(tag.group())
            else:
                i += 1
                continue
            skips.append((i, end))
            i = end
        return skips

    def _block_comment_end(self, start: int) -> int:
        text, depth, i = self.text, 0, start
        while i < len(text):
            pair = text[i : i + 2]
            if pair == "/*":
                depth += 1
                i += 2
            elif pair == "*/":
                depth -= 1
                i += 2
                if depth == 0:
                    return i
            else:
                i += 1
        return len(text)

    def _quoted_end(self, start: int, quote: str, backslashes: bool) -> int:
        text, i = self.text, start + 1
        while i < len(text):
            if backslashes and text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                if text[i + 1 : i + 2] == quote:
                    i += 2
                    continue
                return i + 1
            i += 1
        return len(text)


def _is_ident(text: str, index: int) -> bool:
    return index >= 0 and bool(_IDENT_CHAR.match(text[index]))


_CONCURRENT_INDEX = re.compile(
    r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>(?:\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)"
    r"(?:\.(?:\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*))?)\s+ON\s",
    re.IGNORECASE,
)


def concurrent_index(statement: Statement) -> str | None:
    """The index a ``CREATE INDEX CONCURRENTLY`` names, as written (quotes kept).

    A failed or interrupted CONCURRENTLY build leaves an invalid index of
    that name behind; the engine drops it before running the statement again.
    """
    words = _leading_words(statement.text, 3)
    if words[:1] != ("CREATE",):
        return None
    body = statement.text[statement.text.upper().index("CREATE") :]
    match = _CONCURRENT_INDEX.match(body)
    return match["name"] if match else None
