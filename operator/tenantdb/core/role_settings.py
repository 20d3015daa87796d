"""Role-level settings of tenant roles: what provisioning sets, read back and compared.

Provisioning puts exactly this on a tenant's roles (``pg_db_role_setting``):
the login role gets its plan's ``statement_timeout``, ``work_mem`` when the
plan has one, and ``search_path`` pinned to where the tenant's data lives;
the owner role gets the same ``search_path``; neither gets an entry for one
database only. The login role also carries its plan's ``CONNECTION LIMIT``.

A role may ``ALTER ROLE`` itself ``SET`` (role-wide or ``IN DATABASE``) any
user-settable parameter, so the isolation check reads every entry of both
roles back: anything extra, missing or changed is a finding, and the repair
removes what the operator did not set (provisioning restores the rest).
This module owns no other catalog and never touches roles that are not the
tenant's own.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import naming
from tenantdb.settings import PlanLimits

DATABASE_SEARCH_PATH = naming.Identifier("public")
"""Where ``database`` tenants' roles resolve names (their own database's ``public``)."""


@dataclass(frozen=True)
class Expected:
    """What one tenant role must carry, as provisioning sets it."""

    role: naming.Identifier
    settings: Mapping[str, str]
    """Role-wide settings (parameter name, lowercase, to value), and nothing else."""
    connection_limit: int | None = None
    """The role's ``CONNECTION LIMIT``, or None where it is not the operator's business."""


@dataclass(frozen=True)
class Observed:
    """What one role carries in the catalogs."""

    role: str
    connection_limit: int
    settings: Mapping[str, str] = field(default_factory=dict)
    """Role-wide entries (``setdatabase = 0``)."""
    per_database: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Entries of ``ALTER ROLE ... IN DATABASE d SET``, by database name."""


_READ = sql.SQL(  # every setting entry and the connection limit of some roles
    """
    SELECT r.rolname::text, r.rolconnlimit, s.setdatabase, d.datname::text, s.setconfig
    FROM pg_roles r
    LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid
    LEFT JOIN pg_database d ON d.oid = s.setdatabase
    WHERE r.rolname = ANY(%s)
    """
)


def expected(
    names: naming.TenantNames,
    mode: Isolation,
    shared_schema: naming.Identifier,
    limits: PlanLimits,
) -> list[Expected]:
    """What ``tenancy.provision`` sets on the tenant's own roles in this mode."""
    if mode is Isolation.SCHEMA:
        path = names.schema
    elif mode is Isolation.SHARED:
        path = shared_schema
    else:
        path = DATABASE_SEARCH_PATH
    login = {"statement_timeout": str(limits.statement_timeout), "search_path": path}
    if limits.work_mem:
        login["work_mem"] = str(limits.work_mem)
    roles = [Expected(names.login_role, login, limits.connection_limit)]
    if mode is not Isolation.SHARED:  # shared tenants' owner is the shared owner, not theirs
        roles.append(Expected(names.owner_role, {"search_path": path}))
    return roles


def parse_config(entries: Sequence[str] | None) -> dict[str, str]:
    """``setconfig`` (``name=value`` strings) as a mapping with lowercase names."""
    parsed = {}
    for entry in entries or ():
        name, _, value = entry.partition("=")
        parsed[name.lower()] = value
    return parsed


def observe(rows: Sequence[tuple[Any, ...]]) -> dict[str, Observed]:
    """Catalog rows (role, connection limit, database oid and name, setconfig) by role."""
    limits: dict[str, int] = {}
    wide: dict[str, dict[str, str]] = {}
    local: dict[str, dict[str, dict[str, str]]] = {}
    for role, connection_limit, database_oid, database, config in rows:
        limits[role] = int(connection_limit)
        wide.setdefault(role, {})
        local.setdefault(role, {})
        if database_oid is None:
            continue
        if int(database_oid) == 0:
            wide[role].update(parse_config(config))
        else:
            local[role][str(database or database_oid)] = parse_config(config)
    return {role: Observed(role, limits[role], wide[role], local[role]) for role in limits}


def same_value(name: str, actual: str, wanted: str) -> bool:
    """Whether a stored value is the one provisioning set.

    PostgreSQL stores a ``search_path`` element quoted only where it needs
    quotes, so ``"t_acme"`` and ``t_acme`` are the same path.
    """
    if name == "search_path" and len(actual) > 1 and actual[0] == actual[-1] == '"':
        actual = actual[1:-1]
    return actual == wanted


def compare(wanted: Sequence[Expected], observed: Mapping[str, Observed]) -> list[str]:
    """Every difference, in plain words; values only of the settings the operator manages.

    A role that is missing altogether is reported by the role check, not here.
    """
    findings = []
    for role in wanted:
        seen = observed.get(role.role)
        if seen is None:
            continue
        for name, value in sorted(role.settings.items()):
            if name not in seen.settings:
                findings.append(f"role {role.role} lacks {name} = {value}")
            elif not same_value(name, seen.settings[name], value):
                findings.append(
                    f"role {role.role} sets {name} to {seen.settings[name]}, not {value}"
                )
        extra = sorted(set(seen.settings) - set(role.settings))
        if extra:
            findings.append(
                f"role {role.role} sets {', '.join(extra)}, which the operator does not"
            )
        for database, entries in sorted(seen.per_database.items()):
            findings.append(
                f"role {role.role} has settings in database {database}: {', '.join(sorted(entries))}"
            )
        if role.connection_limit is not None and seen.connection_limit != role.connection_limit:
            findings.append(
                f"role {role.role} has CONNECTION LIMIT {seen.connection_limit},"
                f" not {role.connection_limit}"
            )
    return findings


def reset_setting(role: str, name: str) -> sql.Composed:
    """Remove one role-wide setting (``ALTER ROLE ... RESET name``)."""
    return sql.SQL("ALTER ROLE {} RESET {}").format(
        sql.Identifier(role), sql.Identifier(*name.split("."))
    )


def reset_in_database(role: str, database: str) -> sql.Composed:
    """Remove every setting a role has in one database only."""
    return sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
        sql.Identifier(role), sql.Identifier(database)
    )


def removals(wanted: Sequence[Expected], observed: Mapping[str, Observed]) -> list[sql.Composed]:
    """Statements removing every entry provisioning did not make.

    Settings provisioning makes but with another value are left to
    provisioning, which sets them again (so the role is never without them).
    """
    statements = []
    for role in wanted:
        seen = observed.get(role.role)
        if seen is None:
            continue
        for name in sorted(set(seen.settings) - set(role.settings)):
            statements.append(reset_setting(role.role, name))
        for database in sorted(seen.per_database):
            statements.append(reset_in_database(role.role, database))
    return statements


def findings(
    conn: psycopg.Connection[Any],
    names: naming.TenantNames,
    mode: Isolation,
    shared_schema: naming.Identifier,
    limits: PlanLimits,
) -> list[str]:
    """How the tenant's role settings differ from its plan and its isolation mode."""
    wanted = expected(names, mode, shared_schema, limits)
    rows = conn.execute(_READ, ([r.role for r in wanted],)).fetchall()
    return compare(wanted, observe(rows))


def remove_unexpected(
    conn: psycopg.Connection[Any],
    names: naming.TenantNames,
    mode: Isolation,
    shared_schema: naming.Identifier,
    limits: PlanLimits,
) -> None:
    """Reset every setting the operator did not make (in the caller's transaction)."""
    wanted = expected(names, mode, shared_schema, limits)
    rows = conn.execute(_READ, ([r.role for r in wanted],)).fetchall()
    statements = removals(wanted, observe(rows))
    for statement in statements:
        conn.execute(statement)
