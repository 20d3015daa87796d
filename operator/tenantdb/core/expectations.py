"""What a tenant's migration history says its tables should be, read from the scripts.

Validation compares a tenant's tables with what the versions its ledger
records as applied create, rename and drop; reset keeps the rows of tables
those versions write themselves (reference data a migration inserts is part
of the schema's history, not of the tenant's data). Both need the same
reading of the scripts, done here with sqlglot's PostgreSQL dialect, one
statement at a time (``statements.split``), so one statement it cannot read
spoils nothing else: it is reported as unread instead.

Names follow PostgreSQL's folding: unquoted identifiers are lowercased,
quoted ones kept. Only unqualified names and names in the tenant's own
schema count (a migration runs with its tenant's schema on the search path).
Pure: nothing here opens a connection.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from tenantdb.core.migrations import scripts, statements

OPAQUE_KEYWORDS = ("DO", "CALL", "EXECUTE", "SELECT")
"""Statements that may create or write tables in ways no parser can see (a ``DO``
block's dynamic SQL, a procedure); ``SELECT ... INTO`` is read, other selects are not."""


@dataclass
class Expectations:
    """The tables a tenant's applied versions leave, and what could not be read."""

    tables: dict[str, int] = field(default_factory=dict)
    """Expected table name -> the version that created (or last renamed) it."""
    written: dict[str, int] = field(default_factory=dict)
    """Tables whose rows a version writes itself (INSERT, UPDATE, COPY), -> that version."""
    unread: list[str] = field(default_factory=list)
    """``version N line L: why`` for each statement whose effect on tables is unknown."""


def expected(applied: Iterable[scripts.Script], schema: str) -> Expectations:
    """Replay the ``up`` of each applied script, in version order, over an empty schema."""
    found = Expectations()
    for script in sorted(applied, key=lambda s: s.version):
        for statement in statements.split(script.up):
            _replay(found, script.version, statement, schema)
    return found


def _replay(
    found: Expectations, version: int, statement: statements.Statement, schema: str
) -> None:
    where = f"version {version} line {statement.line}"
    if statement.keywords[:1] and statement.keywords[0] in OPAQUE_KEYWORDS[:3]:
        found.unread.append(f"{where}: {statement.keywords[0]} may create tables unseen")
        return
    try:
        parsed = sqlglot.parse_one(statement.text, read="postgres")
    except sqlglot.errors.SqlglotError:
        parsed = None
    if parsed is None or isinstance(parsed, exp.Command):
        if statement.keywords[:1] and statement.keywords[0] in OPAQUE_KEYWORDS:
            found.unread.append(f"{where}: {statement.keywords[0]} may create tables unseen")
        elif _may_touch_tables(statement):
            found.unread.append(f"{where}: statement not understood")
        return
    _apply(found, version, parsed, schema)


def _apply(found: Expectations, version: int, parsed: exp.Expr, schema: str) -> None:
    if isinstance(parsed, exp.Create) and str(parsed.args.get("kind") or "").upper() == "TABLE":
        name = _name(parsed.this, schema)
        if name is not None:
            found.tables[name] = version
    elif isinstance(parsed, exp.Drop) and str(parsed.args.get("kind") or "").upper() == "TABLE":
        for table in parsed.args.get("tables") or [parsed.this]:
            name = _name(table, schema)
            found.tables.pop(name or "", None)
            found.written.pop(name or "", None)
    elif isinstance(parsed, exp.Alter) and str(parsed.args.get("kind") or "").upper() == "TABLE":
        _rename(found, version, parsed, schema)
    elif isinstance(parsed, exp.Select) and parsed.args.get("into") is not None:
        name = _name(parsed.args["into"].this, schema)
        if name is not None:
            found.tables[name] = version
    elif isinstance(parsed, exp.Insert | exp.Update | exp.Copy):
        name = _name(parsed.this, schema)
        if name is not None:
            found.written[name] = version


def _rename(found: Expectations, version: int, parsed: exp.Alter, schema: str) -> None:
    old = _name(parsed.this, schema)
    for action in parsed.args.get("actions") or []:
        if isinstance(action, exp.AlterRename) and old is not None:
            new = _name(action.this, schema)
            if new is not None and old in found.tables:
                del found.tables[old]
                found.tables[new] = version
            if new is not None and old in found.written:
                found.written[new] = found.written.pop(old)


def _name(node: exp.Expr | None, schema: str) -> str | None:
    """The table's name as PostgreSQL stores it, or None if it lies in another schema."""
    while isinstance(node, exp.Schema):  # CREATE TABLE t (columns): the table is inside
        node = node.this
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        return None
    qualifier = node.args.get("db")
    if isinstance(qualifier, exp.Identifier) and _folded(qualifier) != schema:
        return None
    return _folded(node.this)


def _folded(identifier: exp.Identifier) -> str:
    text = str(identifier.this)
    return text if identifier.quoted else text.lower()


def _may_touch_tables(statement: statements.Statement) -> bool:
    words = statement.keywords
    return bool(words) and (
        words[:2] in (("CREATE", "TABLE"), ("DROP", "TABLE"), ("ALTER", "TABLE"))
        or words[0] in ("INSERT", "COPY", "UPDATE")
        or "TABLE" in words[:4]
    )
