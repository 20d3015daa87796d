"""What a tenant's migration history says its tables should be, read from the scripts.

Validation compares a tenant's tables with what the versions its ledger
records as applied create, rename and drop; reset keeps the rows of tables
those versions write themselves (reference data a migration inserts is part
of the schema's history, not of the tenant's data). Both need the same
reading of the scripts, done here with sqlglot's PostgreSQL dialect, one
statement at a time (``statements.split``), so one statement it cannot read
spoils nothing else: it is reported as unread instead. The reading itself is
``script_reading``'s, imported when a history is first replayed, not with this
module: sqlglot costs the operator about 8 MB of memory, for good, where no
Operation ever validates or resets a tenant.

Names follow PostgreSQL's folding: unquoted identifiers are lowercased,
quoted ones kept. Only unqualified names and names in the tenant's own
schema count (a migration runs with its tenant's schema on the search path).
Pure: nothing here opens a connection.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from tenantdb.core.migrations import scripts, statements


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
    from tenantdb.core import script_reading  # noqa: PLC0415 - see the module's docstring

    found = Expectations()
    for script in sorted(applied, key=lambda s: s.version):
        for statement in statements.split(script.up):
            script_reading.replay(found, script.version, statement, schema)
    return found
