"""What the operator's own database role may do, checked once at start-up.

The operator needs no superuser, as on managed PostgreSQL services. It needs:

==========================  ===============================================
``CREATEROLE``              every tenant's roles (all isolation modes)
``CREATEDB``                ``database`` tenants' databases
``CREATE`` on its database  the control schema and shared schemas
``pg_signal_backend``       ending a suspended or deleted tenant's sessions,
                            the statement watchdog's cancel and terminate
``pg_read_all_stats``       the watchdog seeing when tenants' statements began
==========================  ===============================================

The operator's own database is closed to PUBLIC at start-up (the tenants
living there get CONNECT of their own); other databases PUBLIC may connect
to (``postgres``, ``template1``) are reported, since only their owners can
close them. ``BYPASSRLS`` is never needed: a shared tenant's rows are deleted by the
tenant itself (``tenancy``), and the operator owns the one shared table it
writes (the role mapping). ``inspect`` reads all of it in one query;
``Privileges`` says precisely what is missing and, per isolation mode,
whether a tenant can be served at all.
"""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import errors

_INSPECT = sql.SQL(
    """
    SELECT current_user, current_database(), r.rolsuper, r.rolcreaterole, r.rolcreatedb,
           pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
           pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
           has_database_privilege(current_database(), 'CREATE'),
           current_setting('server_version_num')::int,
           ARRAY(SELECT d.datname::text FROM pg_database d
                 WHERE d.datallowconn AND has_database_privilege('public', d.oid, 'CONNECT')
                 AND (d.datname <> current_database()
                      OR NOT pg_has_role(current_user, d.datdba, 'USAGE')) ORDER BY 1)
    FROM pg_roles r WHERE r.rolname = current_user
    """
)


@dataclass(frozen=True)
class Privileges:
    """The operator role's attributes and memberships that matter to it."""

    role: str
    database: str
    superuser: bool
    createrole: bool
    createdb: bool
    signal_backend: bool
    read_all_stats: bool
    create_in_database: bool
    server_version: int
    public_databases: list[str]
    """Databases PUBLIC may connect to that the operator does not close: others
    (``postgres``, ``template1`` by default), and its own if it does not own it."""

    def missing(self) -> list[str]:
        """Each missing privilege, with what it is for and the statement granting it."""
        if self.superuser:
            return []
        role, database = _quoted(self.role), _quoted(self.database)
        checks = [
            (self.createrole, "CREATEROLE", "tenants' roles", f"ALTER ROLE {role} CREATEROLE"),
            (
                self.createdb,
                "CREATEDB",
                "databases of database tenants",
                f"ALTER ROLE {role} CREATEDB",
            ),
            (
                self.create_in_database,
                f"CREATE on database {self.database}",
                "the control and shared schemas",
                f"GRANT CREATE ON DATABASE {database} TO {role}",
            ),
            (
                self.signal_backend,
                "membership in pg_signal_backend",
                "ending tenants' sessions (suspension, deletion, the watchdog)",
                f"GRANT pg_signal_backend TO {role}",
            ),
            (
                self.read_all_stats,
                "membership in pg_read_all_stats",
                "the watchdog seeing tenants' running statements",
                f"GRANT pg_read_all_stats TO {role}",
            ),
        ]
        return [
            f"{what} (needed for {purpose}: {grant})"
            for held, what, purpose, grant in checks
            if not held
        ]

    def exposures(self) -> list[str]:
        """Databases a ``database`` tenant could open besides its own, with the fix.

        Only their owners can close them; the operator says so at start-up.
        """
        return [
            f"PUBLIC may connect to database {name}: database tenants can open it and read"
            f" its catalogs (REVOKE CONNECT ON DATABASE {_quoted(name)} FROM PUBLIC)"
            for name in self.public_databases
        ]

    def refusal(self, isolation: str) -> str | None:
        """Why a tenant of this isolation mode cannot be served, or None."""
        lacking = []
        if not (self.superuser or self.createrole):
            lacking.append("CREATEROLE")
        if isolation == "database" and not (self.superuser or self.createdb):
            lacking.append("CREATEDB")
        if not lacking:
            return None
        return (
            f"the operator's database role {self.role} lacks {' and '.join(lacking)},"
            f" needed for {isolation} tenants (see README: the operator's database role)"
        )

    def require(self, isolation: str) -> None:
        """Raise ``InsufficientPrivilege`` when a tenant of this mode cannot be served."""
        reason = self.refusal(isolation)
        if reason is not None:
            raise errors.InsufficientPrivilege(reason)


def inspect(conn: psycopg.Connection[Any]) -> Privileges:
    """The operator role's privileges, in one query."""
    row = conn.execute(_INSPECT).fetchone()
    if row is None:
        raise errors.InsufficientPrivilege("the operator's role is not in pg_roles")
    return Privileges(*row)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
