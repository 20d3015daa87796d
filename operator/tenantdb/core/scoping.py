"""Where a tenant's data lives, and how a session is narrowed to it.

The migration engine and the seeders both run work "inside" one tenant.
This module is the one place that knows what that means for each isolation
mode: which role a session logs in as and to which database
(``session_login``; the connections themselves come from
``pools.TenantSessions``), which role to ``SET LOCAL ROLE`` to within it,
and which ``search_path`` to pin. A session as an owner role can narrow
itself further (to its login role), never widen: there is nothing above
its session user to return to.
"""

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

Acting = Literal["owner", "login"]


@dataclass(frozen=True)
class TenantLocation:
    """A live tenant as the registry records it."""

    uid: str
    name: str
    namespace: str
    isolation: str
    schema_name: str | None
    database_name: str
    owner_role: str
    login_role: str

    def search_path(self, shared_schema: str) -> str:
        """The one schema unqualified names resolve to for this tenant.

        A shared tenant's is the shared schema its registry row names (its
        namespace's, or the legacy one); ``shared_schema`` (the legacy one) is
        only a fallback for a row that names none.
        """
        if self.isolation == "shared":
            return self.schema_name or shared_schema
        if self.isolation == "database":
            return "public"
        return self.schema_name or "public"


_COLUMNS = "uid, name, namespace, isolation, schema_name, database_name, owner_role, login_role"


def load(conn: psycopg.Connection[Any], control_schema: str, uid: str) -> TenantLocation | None:
    """One live tenant by UID, or None (also while it waits for its restore: nothing
    runs inside a tenant before its data is there)."""
    query = sql.SQL(
        "SELECT " + _COLUMNS + " FROM {}.tenants"
        " WHERE uid = %s AND retained_at IS NULL AND restoring_from IS NULL"
    )
    row = conn.execute(query.format(sql.Identifier(control_schema)), (uid,)).fetchone()
    return TenantLocation(*row) if row else None


def live_tenants(
    conn: psycopg.Connection[Any], control_schema: str, namespace: str | None = None
) -> list[TenantLocation]:
    """Every live tenant (of one namespace, if given), in name order."""
    query = sql.SQL(
        "SELECT " + _COLUMNS + " FROM {}.tenants"
        " WHERE retained_at IS NULL AND restoring_from IS NULL AND (%(namespace)s::text IS NULL OR namespace = %(namespace)s) ORDER BY namespace, name"
    ).format(sql.Identifier(control_schema))
    return [TenantLocation(*row) for row in conn.execute(query, {"namespace": namespace})]


def enter(
    conn: psycopg.Connection[Any], location: TenantLocation, acting: Acting, shared_schema: str
) -> None:
    """Narrow the current transaction to one tenant.

    ``owner`` acts as the role owning the tenant's objects (DDL); for a
    shared tenant that is its space's shared owner (the registry's ``owner_role``). ``login`` acts as the tenant's
    own login role, so privileges and row-level security apply exactly as
    they do to the application. Must run inside a transaction: both
    settings are ``LOCAL`` and vanish at its end.
    """
    role, path = acting_as(location, acting, shared_schema)
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(path)))


def acting_as(location: TenantLocation, acting: Acting, shared_schema: str) -> tuple[str, str]:
    """The role and the search_path that narrow a session to the tenant."""
    role = location.owner_role if acting == "owner" else location.login_role
    return role, location.search_path(shared_schema)


def session_login(location: TenantLocation) -> tuple[str, str]:
    """The role and database a session for this tenant logs in as: its owner role
    (for a shared tenant, its space's shared owner, as the registry records it), in
    the database holding its data."""
    return location.owner_role, location.database_name
