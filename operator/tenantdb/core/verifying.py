"""The isolation check: is every tenant still as tightly shut as provisioned?

Roles can be altered by hand, grants added, RLS switched off. ``verify``
reads the catalogs and returns findings in plain words (never changing
anything); ``repair`` converges the tenant again and re-secures shared
tables. The controllers run both periodically and report
``IsolationVerified``.
"""

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.api.tenants import Isolation
from tenantdb.core import (
    connect_group,
    connecting,
    naming,
    provisioning,
    registry,
    role_settings,
    securing,
    shared,
    tenancy,
)
from tenantdb.settings import DEFAULT_PLANS, PlanLimits

DANGEROUS_ATTRIBUTES = (
    "rolsuper",
    "rolcreaterole",
    "rolcreatedb",
    "rolreplication",
    "rolbypassrls",
)

_ROLE_ATTRIBUTES = sql.SQL(
    "SELECT rolname, " + ", ".join(DANGEROUS_ATTRIBUTES) + " FROM pg_roles WHERE rolname = ANY(%s)"
)
_SCHEMA_STATE = sql.SQL(
    """
    SELECT pg_get_userbyid(n.nspowner),
           EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE {opened}),
           has_schema_privilege(%(login)s, n.oid, 'CREATE'),
           ARRAY(SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = n.oid
                 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                 AND pg_get_userbyid(c.relowner) <> %(owner)s ORDER BY 1)
    FROM pg_namespace n WHERE n.nspname = %(schema)s
    """
).format(opened=sql.SQL(connect_group.OPENED))
_SPACE_STATE = sql.SQL(
    """
    SELECT (SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.nspname = %(schema)s),
           EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
                   WHERE n.nspname = %(schema)s AND {opened}),
           ARRAY(SELECT g.rolname::text FROM pg_auth_members m
                 JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
                 WHERE r.rolname = %(owner)s AND NOT EXISTS (
                     SELECT 1 FROM pg_auth_members t JOIN pg_roles tg ON tg.oid = t.roleid
                     WHERE t.member = g.oid AND tg.rolname = %(members)s)
                 ORDER BY 1)
    """
).format(opened=sql.SQL(connect_group.OPENED))
"""The space's schema owner, PUBLIC's (or every tenant's, through the connect group)
access, and the roles its owner is a member of that are not its own tenants' login
roles."""
_DATABASE_STATE = sql.SQL(
    """
    SELECT pg_get_userbyid(d.datdba),
           d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE {opened})
    FROM pg_database d WHERE d.datname = %(database)s
    """
).format(opened=sql.SQL(connect_group.OPENED))


def verify(
    server: tenancy.Server,
    uid: str,
    name: str,
    plans: Mapping[str, PlanLimits] = DEFAULT_PLANS,
) -> list[str]:
    """Every way the tenant's isolation differs from what was provisioned.

    ``plans`` gives the limits of the plan the registry records for the tenant.
    """
    names = naming.tenant_names(name, uid)
    with connecting.connection(server.pool) as conn:
        record = registry.load(conn, server.control_schema, uid)
        if record is None:
            return ["the tenant is not in the registry"]
        mode = Isolation(record.isolation)
        space = tenancy.space_of(server, record) if mode is Isolation.SHARED else None
        findings = _role_findings(conn, names, mode, space)
        if mode is Isolation.SCHEMA:
            findings += _schema_findings(conn, names)
        elif space is not None:
            findings += _shared_findings(conn, space, names, uid)
        else:
            findings += _database_findings(conn, names)
        schema = space.schema if space else server.shared_schema
        findings += _plan_findings(conn, names, mode, schema, record.plan, plans)
    return findings + _owner_login_findings(server, record)


def _owner_login_findings(server: tenancy.Server, record: registry.TenantRecord) -> list[str]:
    """A tenant's owner role whose password is no longer the operator's alone (a role
    may change its own, so a Migration can): its author could log in as the owner."""
    if server.sessions.password_accepted(record.owner_role, record.database_name):
        return []
    return [f"role {record.owner_role} has a password the operator did not set"]


def repair(
    server: tenancy.Server,
    request: tenancy.TenantRequest,
    password: str | tenancy.PasswordSource,
) -> None:
    """Converge the tenant again; hand stray objects back to their owners; take back an
    owner's login that is no longer the operator's alone. A tenant deleted meanwhile is
    left alone (``TenantGone``)."""
    tenancy.provision(server, request, password, reset_password=False, repairing=True)
    names = naming.tenant_names(request.name, request.uid)
    with connecting.connection(server.pool) as conn, conn.transaction():
        record = registry.load(conn, server.control_schema, request.uid)
        shared_mode = request.isolation is Isolation.SHARED
        space = tenancy.space_of(server, record) if record and shared_mode else None
        schema = space.schema if space else server.shared_schema
        role_settings.remove_unexpected(conn, names, request.isolation, schema, request.limits)
        if space is not None:
            securing.secure_tables(conn, space)
        elif request.isolation is Isolation.SCHEMA:
            state = conn.execute(_SCHEMA_STATE, _schema_params(conn, names)).fetchone()
            for table in state[3] if state else []:
                conn.execute(provisioning.give_to_owner(names, table))
    # Sessions opened before the repair keep the settings it removed (DISCARD ALL
    # goes back to a session's start-up values): only new ones may be used.
    server.sessions.forget(names.owner_role, names.login_role)
    if record is not None:
        server.sessions.reset_password(record.owner_role)


def _role_findings(
    conn: psycopg.Connection[Any],
    names: naming.TenantNames,
    mode: Isolation,
    space: shared.Space | None,
) -> list[str]:
    roles = [names.login_role] if mode is Isolation.SHARED else [names.login_role, names.owner_role]
    connect = _connect_group(conn)
    findings = []
    present = set()
    for rolname, *flags in conn.execute(_ROLE_ATTRIBUTES, ([*roles, connect],)).fetchall():
        present.add(rolname)
        granted = [attr[3:] for attr, on in zip(DANGEROUS_ATTRIBUTES, flags, strict=True) if on]
        if granted:
            findings.append(f"role {rolname} has {', '.join(granted).upper()}")
    findings += [f"role {role} is missing" for role in roles if role not in present]
    grouped = conn.info.server_version >= connect_group.FIRST_VERSION
    allowed = tenancy.allowed_memberships(names, mode, space, connect if grouped else None)
    # Every tenant inherits from the connect group: it is a member of nothing.
    for role, group, may_set in conn.execute(provisioning.memberships(), ([*roles, connect],)):
        if (role, group) not in allowed:
            findings.append(f"role {role} is a member of {group}")
        elif group == connect and may_set:
            findings.append(f"role {role} may set or administer {group}")
    return findings


def _connect_group(conn: psycopg.Connection[Any]) -> str:
    """The connect group's name (``connect_group``), whether it exists or not."""
    return connect_group.role_name(conn.info.user)


def _plan_findings(
    conn: psycopg.Connection[Any],
    names: naming.TenantNames,
    mode: Isolation,
    shared_schema: naming.Identifier,
    plan: str,
    plans: Mapping[str, PlanLimits],
) -> list[str]:
    """Role settings and connection limit against the plan (``role_settings``)."""
    limits = plans.get(plan)
    if limits is None:
        return [f"plan {plan} is not configured, so its limits cannot be checked"]
    return role_settings.findings(conn, names, mode, shared_schema, limits)


def _schema_params(conn: psycopg.Connection[Any], names: naming.TenantNames) -> dict[str, str]:
    return {
        "login": names.login_role,
        "owner": names.owner_role,
        "schema": names.schema,
        "group": _connect_group(conn),
    }


def _schema_findings(conn: psycopg.Connection[Any], names: naming.TenantNames) -> list[str]:
    state = conn.execute(_SCHEMA_STATE, _schema_params(conn, names)).fetchone()
    if state is None:
        return [f"schema {names.schema} is missing"]
    owner, public_access, login_creates, foreign_objects = state
    findings = []
    if owner != names.owner_role:
        findings.append(f"schema {names.schema} is owned by {owner}")
    if public_access:
        findings.append(f"PUBLIC or every tenant has privileges on schema {names.schema}")
    if login_creates:
        findings.append(f"role {names.login_role} may CREATE in schema {names.schema}")
    findings += [f"{names.schema}.{t} is not owned by {names.owner_role}" for t in foreign_objects]
    return findings


def _shared_findings(
    conn: psycopg.Connection[Any], space: shared.Space, names: naming.TenantNames, uid: str
) -> list[str]:
    schema = space.schema
    findings = _space_findings(conn, space)
    for table in securing.read_tables(conn, space):
        if not table.has_tenant_id:
            if not table.shut:
                findings.append(
                    f"shared table {table.name} has no tenant_id column and is not locked"
                )
        elif not table.shut:
            findings.append(f"shared table {table.name} does not force row-level security")
        elif not table.isolated:
            findings.append(f"shared table {table.name} lacks its isolation policies")
        if table.owner != space.owner_role:
            findings.append(f"shared table {table.name} is owned by {table.owner}")
    findings += securing.key_leaks(conn, space)
    mapped = conn.execute(
        sql.SQL("SELECT tenant_id::text FROM {} WHERE role_name = %s").format(
            sql.Identifier(schema, shared.MAPPING_TABLE)
        ),
        (names.login_role,),
    ).fetchone()
    if mapped != (uid,):
        findings.append(f"role {names.login_role} is not mapped to its tenant")
    return findings


def _space_findings(conn: psycopg.Connection[Any], space: shared.Space) -> list[str]:
    """The space's schema is its owner's, closed to PUBLIC, and its owner may act as
    no role but the login roles of its own space's tenants."""
    params = {
        "schema": space.schema,
        "owner": space.owner_role,
        "members": space.members_role,
        "group": _connect_group(conn),
    }
    state = conn.execute(_SPACE_STATE, params)
    row = state.fetchone()
    if row is None or row[0] is None:
        return [f"shared schema {space.schema} is missing"]
    owner, public_access, foreign = row
    findings = []
    if owner != space.owner_role:
        findings.append(f"shared schema {space.schema} is owned by {owner}")
    if public_access:
        findings.append(f"PUBLIC or every tenant has privileges on shared schema {space.schema}")
    findings += [f"role {space.owner_role} is a member of {group}" for group in foreign]
    return findings


def _database_findings(conn: psycopg.Connection[Any], names: naming.TenantNames) -> list[str]:
    params = {"database": names.database, "group": _connect_group(conn)}
    state = conn.execute(_DATABASE_STATE, params).fetchone()
    if state is None:
        return [f"database {names.database} is missing"]
    owner, public_connect = state
    findings = []
    if owner != names.owner_role:
        findings.append(f"database {names.database} is owned by {owner}")
    if public_connect:
        findings.append(f"PUBLIC or every tenant may connect to database {names.database}")
    return findings
