"""How one statement of a migration script changes a schema's tables, read with sqlglot.

``expectations`` replays a tenant's history through ``replay``; this module
holds everything that needs sqlglot's PostgreSQL dialect, so that sqlglot is
imported only when a history is first replayed. Pure: nothing here opens a
connection.
"""

import sqlglot
from sqlglot import exp

from tenantdb.core import expectations
from tenantdb.core.migrations import statements

OPAQUE_KEYWORDS = ("DO", "CALL", "EXECUTE", "SELECT")
"""Statements that may create or write tables in ways no parser can see (a ``DO``
block's dynamic SQL, a procedure); ``SELECT ... INTO`` is read, other selects are not."""


def replay(
    found: expectations.Expectations, version: int, statement: statements.Statement, schema: str
) -> None:
    """Apply one statement's effect on the tables to ``found`` (or say it cannot be read)."""
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


def _apply(found: expectations.Expectations, version: int, parsed: exp.Expr, schema: str) -> None:
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


def _rename(found: expectations.Expectations, version: int, parsed: exp.Alter, schema: str) -> None:
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
