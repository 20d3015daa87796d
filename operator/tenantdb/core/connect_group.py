"""The one role through which tenants' roles may connect to the operator's database.

Where CONNECT on the operator's database is revoked from PUBLIC, the schema and
shared tenants living there need it of their own. Granted to each tenant's
roles, it made the database's ACL grow by two entries per tenant: every new
tenant rewrote that one catalog row (tens of thousands of entries at 10,000
tenants, under the bootstrap lock, so provisioning was serialised on it), and
every connection searched it. So CONNECT goes to one ``NOLOGIN`` group, and a
tenant's roles join it with ``INHERIT TRUE, SET FALSE``: they connect through
it, and can neither become it nor make anything owned by it. Joining writes a
row of its own in ``pg_auth_members``, not the database's.

The group holds nothing but CONNECT. Whatever a tenant grants it on its own
objects, PUBLIC could have been granted as well, and the isolation check
reports a tenant's schema opened to either. Only the operator's role and its
creators (``creators``, with ``ADMIN OPTION`` and neither ``INHERIT`` nor
``SET``) administer it, so only they add members; ``prepare`` refuses a group
another role made, administers or joined to a role, or that has attributes.
PostgreSQL 15 and older have no ``SET FALSE``: there, tenants keep their own
grants, as tenants made before the group do until their next reconcile.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import creators, errors

FIRST_VERSION = 160000
"""PostgreSQL 16: membership options (``INHERIT TRUE, SET FALSE``)."""


class ConnectGroupForeign(errors.TenantDBError):
    """The connect group belongs to, or is shared with, another role."""

    reason = "ConnectGroupNotOwned"


def role_name(operator_role: str) -> str:
    """The group's name: the operator's role's, so two operators never share one."""
    return f"{operator_role[:48]}_connect"


def everyone(group: str | None) -> sql.Composable:
    """Whom a tenant's own schema or database is closed to: PUBLIC, and the group every
    other tenant inherits from (where it exists)."""
    return sql.SQL("PUBLIC, {}").format(sql.Identifier(group)) if group else sql.SQL("PUBLIC")


OPENED = "(a.grantee = 0 OR a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(group)s))"
"""An ``aclexplode`` row ``a`` that opens something to PUBLIC or to the group (parameter
``group``): the isolation check's test of what ``everyone`` revokes."""


def join(group: str, roles: Sequence[str]) -> sql.Composed:
    """``roles`` connect through ``group``: its CONNECT inherited, the role never set."""
    return sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE").format(
        sql.Identifier(group), sql.SQL(", ").join(sql.Identifier(r) for r in roles)
    )


def prepare(conn: psycopg.Connection[Any], with_creators: bool) -> bool:
    """Create what is missing of the group (under the caller's bootstrap lock, in its
    transaction) and check what exists; ``False`` before PostgreSQL 16. The creators
    (``with_creators``) administer it, to add the tenants they make."""
    row = conn.execute(_FACTS).fetchone()
    assert row is not None
    version, operator, database, may_grant = row
    if int(version) < FIRST_VERSION:
        return False
    group = role_name(str(operator))
    made = [creators.role_name(str(operator), i) for i in range(creators.COUNT)]
    row = conn.execute(_FOUND, {"group": group, "creators": made}).fetchone()
    if row is None:
        conn.execute(
            sql.SQL(
                "SET LOCAL createrole_self_grant = '';\nCREATE ROLE {} NOLOGIN NOINHERIT"
            ).format(sql.Identifier(group))
        )
    found = _Found(*row) if row else _Found(False, False, [], [], [], False)
    _refuse_foreign(group, str(operator), found)
    if may_grant and not found.connects:
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(str(database)), sql.Identifier(group)
            )
        )
    missing = [c for c in made if c not in found.administering] if with_creators else []
    if missing:
        conn.execute(
            sql.SQL("GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE").format(
                sql.Identifier(group), sql.SQL(", ").join(sql.Identifier(c) for c in missing)
            )
        )
    return True


_FACTS = """
SELECT current_setting('server_version_num')::int, session_user::text,
       current_database()::text,
       (SELECT r.rolsuper OR pg_has_role(current_user, d.datdba, 'USAGE')
          FROM pg_roles r, pg_database d
         WHERE r.rolname = current_user AND d.datname = current_database())
"""
"""The server's version, the operator's role (the session's, which names the group as
provisioning and the isolation check name it) and database, and whether the operator
may grant CONNECT on it (a superuser, or a member of its owner)."""

_FOUND = """
SELECT r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
           OR r.rolbypassrls,
       NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AND NOT EXISTS (
           SELECT 1 FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
            WHERE a.roleid = r.oid AND m.rolname = current_user AND a.admin_option),
       ARRAY(SELECT g.rolname::text FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
              WHERE a.member = r.oid ORDER BY 1),
       ARRAY(SELECT m.rolname::text FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
              WHERE a.roleid = r.oid AND (a.admin_option OR a.set_option)
                AND m.rolname <> current_user AND m.rolname <> ALL(%(creators)s) ORDER BY 1),
       ARRAY(SELECT m.rolname::text FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
              WHERE a.roleid = r.oid AND a.admin_option AND NOT a.inherit_option
                AND NOT a.set_option AND m.rolname = ANY(%(creators)s)),
       EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                WHERE d.datname = current_database() AND a.grantee = r.oid
                  AND a.privilege_type = 'CONNECT')
FROM pg_roles r WHERE r.rolname = %(group)s
"""
"""What exists of the group, in one round trip: whether it has attributes, whether the
operator lacks ADMIN OPTION on it, the roles it is a member of, the other roles that
administer it or may become it, the creators administering it, and whether CONNECT
on the database is granted to it (not only to PUBLIC)."""


@dataclass(frozen=True)
class _Found:
    """``_FOUND``'s row."""

    attributes: bool
    not_admin: bool
    groups: list[str]
    others: list[str]
    administering: list[str]
    connects: bool


def _refuse_foreign(group: str, operator: str, found: _Found) -> None:
    """A group another role administers could hand CONNECT on the operator's database
    (and its catalogs) to anyone; one that is a member of a role hands that role's
    rights to every tenant: refuse to use either."""
    problems = []
    if found.attributes:
        problems.append(f"{group} may log in or has SUPERUSER, CREATEROLE, CREATEDB,"
                        " REPLICATION or BYPASSRLS")  # fmt: skip
    if found.not_admin:
        problems.append(f"{operator} holds no ADMIN OPTION on {group}")
    if found.groups:
        problems.append(f"{group} is a member of {', '.join(found.groups)}")
    if found.others:
        problems.append(f"{group} is administered or may be set by {', '.join(found.others)}")
    if problems:
        raise ConnectGroupForeign(
            "the tenants' connect group is not the operator's own (revoke what was"
            " granted to or on it behind the operator's back; drop it only if no tenant"
            " connects through it yet): " + "; ".join(problems)
        )
