"""The roles that create tenants' roles, and why there are several.

PostgreSQL 16+ makes a non-superuser that creates a role a member of it (with
ADMIN OPTION), and every ``ALTER ROLE``, ``GRANT`` of a role and ``CREATE
SCHEMA ... AUTHORIZATION`` checks the current user's right by walking all of
its memberships, read again after any membership change anywhere. Were the
operator's role to create every tenant, each tenant's role statements would
cost time in proportion to the tenants made before it, and a burst of
thousands would slow to a crawl (``bench/roles.py``, docs/benchmarks.md).

So a tenant's roles are created, altered and granted by one of ``COUNT``
creator roles, chosen by the tenant's uid, each holding a ``COUNT``-th of the
memberships. The operator's session runs those statements through a
``SECURITY DEFINER`` function owned by the creator (``as_creator_NN`` in the
control schema): its current user is the creator, and calling it checks no
membership (the function's EXECUTE is granted to the operator's role itself),
unlike ``SET ROLE``, which would walk the operator's memberships through every
creator.

The creators are ``NOLOGIN``; only the operator's role is a member of them
(``INHERIT`` and ``SET``, so everything else the operator does with tenants'
roles works as before), and only it may execute the functions: no tenant role
has any privilege on the control schema. ``prepare`` refuses creators another
role made or joined. Tenants made before creators existed, on PostgreSQL 15
and older, or by a superuser operator (neither checks memberships), stay the
operator's own.
"""

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import errors, naming

COUNT = 32
"""Creator roles per operator role: each walk covers about 3/COUNT memberships per tenant."""
FIRST_VERSION = 160000
"""PostgreSQL 16: where creating a role makes its creator a member."""
FUNCTION_PREFIX = "as_creator_"


class CreatorForeign(errors.TenantDBError):
    """A creator role belongs to, or is shared with, another role."""

    reason = "CreatorNotOwned"


def role_name(operator_role: str, index: int) -> str:
    """The creator's role name: the operator's role's, so two operators never share one."""
    return f"{operator_role[:48]}_creator_{index:02d}"


def function_name(index: int) -> str:
    """The creator's ``SECURITY DEFINER`` function, in the control schema."""
    return f"{FUNCTION_PREFIX}{index:02d}"


def pick(uid: str) -> str:
    """The function of the creator a new tenant's roles are made by (stable per uid)."""
    return function_name(zlib.crc32(uid.encode()) % COUNT)


def run_as(
    conn: psycopg.Connection[Any],
    control: naming.Identifier,
    function: str | None,
    statements: Sequence[sql.Composable],
) -> sql.Composed:
    """``statements`` as the creator behind ``function`` (one call, in the caller's
    transaction), or as they are for the operator's own tenants (``None``)."""
    batch = sql.SQL(";\n").join(statements)
    if function is None or not statements:
        return batch
    return sql.SQL("SELECT {}({})").format(
        sql.Identifier(control, function), sql.Literal(batch.as_string(conn))
    )


def prepare(conn: psycopg.Connection[Any], control: naming.Identifier) -> bool:
    """Create what is missing of the creators and their functions (under the caller's
    bootstrap lock, in its transaction) and check what exists; ``False`` where they
    would be of no use: before PostgreSQL 16, or for a superuser (who is checked for
    no membership)."""
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, current_user::text,"
        " current_database()::text, rolcreatedb, rolsuper FROM pg_roles"
        " WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    version, operator, database, createdb, superuser = row
    if int(version) < FIRST_VERSION or superuser:
        return False
    names = [role_name(str(operator), i) for i in range(COUNT)]
    _refuse_foreign(conn, names, str(operator))
    found = conn.execute(
        _FOUND, {"names": names, "functions": [function_name(i) for i in range(COUNT)],
                 "database": database, "control": control},
    ).fetchall()  # fmt: skip
    for index, (rolcreatedb, may_create, defined) in enumerate(found):
        creator = _Creator(names[index], function_name(index), str(database), bool(createdb))
        _ensure(conn, control, creator, _Found(rolcreatedb, may_create, defined))
    return True


_FOUND = """
SELECT r.rolcreatedb, COALESCE(has_database_privilege(r.oid, %(database)s, 'CREATE'), false),
       to_regprocedure(format('%%I.%%I(text)', %(control)s::text, c.function)) IS NOT NULL
FROM unnest(%(names)s::text[], %(functions)s::text[]) WITH ORDINALITY AS c(name, function, i)
LEFT JOIN pg_roles r ON r.rolname = c.name ORDER BY c.i
"""
"""What exists of each creator, in one round trip: its role's CREATEDB (NULL: no role),
CREATE on the database, its function."""


@dataclass(frozen=True)
class _Creator:
    role: str
    function: str
    database: str
    createdb: bool
    """Whether the operator's role has CREATEDB: its creators have it too, since only a
    role with CREATEDB may name it (``NOCREATEDB``) in ALTER ROLE."""


@dataclass(frozen=True)
class _Found:
    createdb: bool | None
    may_create: bool
    defined: bool


def _ensure(
    conn: psycopg.Connection[Any], control: naming.Identifier, creator: _Creator, found: _Found
) -> None:
    role = sql.Identifier(creator.role)
    if found.createdb is None:
        conn.execute(
            sql.SQL(
                "SET LOCAL createrole_self_grant = 'set, inherit';\n"
                "CREATE ROLE {} NOLOGIN CREATEROLE {};\n"
                "SET LOCAL createrole_self_grant = ''"
            ).format(role, sql.SQL("CREATEDB" if creator.createdb else "NOCREATEDB"))
        )
    elif creator.createdb and not found.createdb:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(role))
    if not found.may_create:
        database = sql.Identifier(creator.database)
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(database, role))
    if found.defined:
        return
    qualified = sql.Identifier(control, creator.function)
    conn.execute(_DEFINITION.format(function=qualified))
    conn.execute(
        sql.SQL(
            "REVOKE ALL ON FUNCTION {function}(text) FROM PUBLIC;\n"
            "GRANT CREATE ON SCHEMA {schema} TO {role};\n"
            "ALTER FUNCTION {function}(text) OWNER TO {role};\n"
            "REVOKE CREATE ON SCHEMA {schema} FROM {role};\n"
            "GRANT EXECUTE ON FUNCTION {function}(text) TO CURRENT_USER"
        ).format(function=qualified, schema=sql.Identifier(control), role=role)
    )


_DEFINITION = sql.SQL(
    """
    CREATE FUNCTION {function}(batch text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        state text;
        message text;
        detail text;
    BEGIN
        EXECUTE batch;
    EXCEPTION WHEN OTHERS THEN
        -- The error again without its context, which would quote the batch (and the
        -- password verifiers in it) into the operator's log and the server's.
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
            detail = PG_EXCEPTION_DETAIL;
        IF detail = '' THEN
            RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message;
        END IF;
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, DETAIL = detail;
    END
    $$
    """
)


_FOREIGN = """
SELECT r.rolname::text,
       r.rolcanlogin OR r.rolsuper OR NOT r.rolcreaterole,
       ARRAY(SELECT m.rolname::text FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
             WHERE a.roleid = r.oid AND m.rolname <> %(operator)s ORDER BY 1),
       ARRAY(SELECT g.rolname::text FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
             WHERE a.member = r.oid AND g.rolname = ANY(%(creators)s) ORDER BY 1),
       NOT EXISTS (SELECT 1 FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
                   WHERE a.roleid = r.oid AND m.rolname = %(operator)s AND a.admin_option)
FROM pg_roles r WHERE r.rolname = ANY(%(creators)s) ORDER BY 1
"""


def _refuse_foreign(conn: psycopg.Connection[Any], creators: list[str], operator: str) -> None:
    """A creator that another role administers, or that has other members, would hand
    that role every tenant the creator makes: refuse to use any."""
    problems = []
    for role, unsafe, members, nested, not_admin in conn.execute(
        _FOREIGN, {"operator": operator, "creators": creators}
    ):
        if unsafe:
            problems.append(f"{role} may log in, is a superuser or lacks CREATEROLE")
        if members:
            problems.append(f"{role} has other members: {', '.join(members)}")
        if nested:
            problems.append(f"{role} is a member of another creator")
        if not_admin:
            problems.append(f"{operator} holds no ADMIN OPTION on {role}")
    if problems:
        raise CreatorForeign(
            "creator roles are not the operator's own (drop them, or let a superuser"
            " repair them): " + "; ".join(problems)
        )
