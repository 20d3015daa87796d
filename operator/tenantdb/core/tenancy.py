"""Provisioning and deprovisioning a tenant, for each isolation mode.

What is atomic is explicit: the registry row, the roles, the schema or the
shared-table membership, and the grants commit together, so a refusal (a
domain already taken) leaves nothing behind. A ``database`` tenant needs
CREATE DATABASE, which PostgreSQL runs outside transactions; if that part
fails for a new tenant, what the first transaction made is dropped again.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from psycopg import conninfo, sql
from psycopg.types.json import Jsonb

from tenantdb.api.tenants import Isolation
from tenantdb.core import (
    connecting,
    databases,
    errors,
    naming,
    passwords,
    provisioning,
    registry,
    shared,
)
from tenantdb.settings import PlanLimits

TENANT_LOCK_NAMESPACE = 0x7E4A
"""First key of the per-tenant advisory lock (second: a hash of the UID)."""


@dataclass(frozen=True)
class Server:
    """One PostgreSQL server and where tenantdb keeps its own objects there."""

    pool: psycopg_pool.ConnectionPool
    url: str = field(repr=False)
    """Superuser-ish URL with a password: never printed."""
    control_schema: naming.Identifier
    shared_schema: naming.Identifier


@dataclass(frozen=True)
class TenantRequest:
    """What the caller wants a tenant to be."""

    uid: str
    name: str
    namespace: str
    isolation: Isolation
    plan: str
    limits: PlanLimits
    display_name: str | None = None
    domain: str | None = None
    suspended: bool = False
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class Provisioned:
    """Where the tenant's data lives, for status and the credentials Secret."""

    names: naming.TenantNames
    database: str
    schema: str
    owner_role: str


def prepare(server: Server) -> None:
    """Control schema, shared schema and group roles: once per operator start."""
    with connecting.connection(server.pool) as conn:
        registry.ensure_control_schema(conn, server.control_schema)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (registry.BOOTSTRAP_LOCK,))
            for role in shared.ROLES:
                if not _role_exists(conn, role):
                    conn.execute(shared.create_role(role))
            conn.execute(provisioning.harden_public_schema())
            conn.execute(shared.bootstrap(server.shared_schema))
            shared.secure_tables(conn, server.shared_schema)


def provision(
    server: Server, request: TenantRequest, password: str, reset_password: bool
) -> Provisioned:
    """Create or converge a tenant; ``password`` is set on creation or when asked."""
    names = naming.tenant_names(request.name, request.uid)
    mode = request.isolation
    with connecting.connection(server.pool) as conn:
        home, is_new = _orient(conn, server, request.uid)
        location = _location(server, names, mode, home)
        try:
            with conn.transaction():
                _lock_tenant(conn, request.uid)
                _register(conn, server, request, location)
                state = _inspect(conn, names)
                verifier = passwords.scram_verifier(password)
                statements = [
                    *_role_statements(names, mode, state, verifier, reset_password),
                    provisioning.configure_login_role(
                        names, request.limits, request.suspended, inherit=mode is Isolation.SHARED
                    ),
                    *_grant_statements(server, names, mode, home, state, request.uid),
                    *_membership_repairs(names, mode, state),
                ]
                conn.execute(sql.SQL(";\n").join(statements))
        except psycopg.errors.UniqueViolation as exc:
            raise _domain_conflict(conn, server.control_schema, request) from exc
        if request.suspended:
            conn.execute(provisioning.terminate_sessions(), (names.login_role,))
    if mode is Isolation.DATABASE:
        try:
            _ensure_database(server, names)
        except errors.TenantDBError:
            if is_new:
                deprovision(server, request.uid, request.name, drop=True)
            raise
    return location


def deprovision(server: Server, uid: str, name: str, drop: bool) -> None:
    """Retain (data kept, login disabled) or drop everything a tenant has."""
    names = naming.tenant_names(name, uid)
    with connecting.connection(server.pool) as conn:
        record = registry.load(conn, server.control_schema, uid)
        mode = Isolation(record.isolation) if record else Isolation.SCHEMA
        if drop and mode is Isolation.DATABASE:
            conn.execute(databases.drop(names))
        with conn.transaction():
            _lock_tenant(conn, uid)
            present = _inspect(conn, names).roles
            existing = [r for r in (names.login_role, names.owner_role) if r in present]
            if names.login_role in existing:
                conn.execute(provisioning.terminate_sessions(), (names.login_role,))
            if not drop:
                if names.login_role in existing:
                    conn.execute(provisioning.disable_login(names))
                conn.execute(registry.mark_retained(server.control_schema), (uid,))
                return
            if mode is Isolation.SHARED:
                _delete_shared_rows(conn, server.shared_schema, uid)
                conn.execute(shared.unmap_role(server.shared_schema), (names.login_role,))
            conn.execute(provisioning.drop_schema(names))
            if existing:
                conn.execute(provisioning.drop_roles(existing))
            conn.execute(registry.forget(server.control_schema), (uid,))


def list_tenants(
    server: Server, namespace: str | None = None
) -> list[tuple[registry.TenantRecord, bool]]:
    """The tenant registry as the operator and the CLI read it: (record, retained)."""
    with connecting.connection(server.pool) as conn:
        rows = conn.execute(registry.listing(server.control_schema), {"namespace": namespace})
        return [(registry.TenantRecord(*row[:-1]), bool(row[-1])) for row in rows.fetchall()]


def rotate_password(server: Server, name: str, uid: str, password: str) -> None:
    """Give the login role a new password (sent as a SCRAM verifier)."""
    names = naming.tenant_names(name, uid)
    with connecting.connection(server.pool) as conn, conn.transaction():
        _lock_tenant(conn, uid)
        conn.execute(provisioning.set_password(names, passwords.scram_verifier(password)))


def _location(server: Server, names: naming.TenantNames, mode: Isolation, home: str) -> Provisioned:
    if mode is Isolation.SHARED:
        return Provisioned(names, home, server.shared_schema, shared.OWNER)
    if mode is Isolation.DATABASE:
        return Provisioned(names, names.database, "public", names.owner_role)
    return Provisioned(names, home, names.schema, names.owner_role)


@dataclass(frozen=True)
class _State:
    """What exists already, read once inside the provisioning transaction."""

    roles: frozenset[str]
    public_connects: bool
    memberships: frozenset[tuple[str, str]]
    server_version: int


_INSPECT = sql.SQL(
    """
    SELECT ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%(roles)s)),
           has_database_privilege('public', current_database(), 'CONNECT'),
           ARRAY(SELECT ARRAY[r.rolname::text, g.rolname::text] FROM pg_auth_members m
                 JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
                 WHERE r.rolname = ANY(%(roles)s)),
           current_setting('server_version_num')::int
    """
)


def _inspect(conn: psycopg.Connection[Any], names: naming.TenantNames) -> _State:
    """One round trip instead of one per check: roles, CONNECT, memberships."""
    row = conn.execute(_INSPECT, {"roles": [names.login_role, names.owner_role]}).fetchone()
    assert row is not None
    roles, public_connects, pairs, version = row
    memberships = frozenset((member, group) for member, group in pairs)
    return _State(frozenset(roles), bool(public_connects), memberships, int(version))


def _role_statements(
    names: naming.TenantNames, mode: Isolation, state: _State, verifier: str, reset_password: bool
) -> list[sql.Composable]:
    statements: list[sql.Composable] = []
    if mode is not Isolation.SHARED and names.owner_role not in state.roles:
        statements.append(provisioning.create_owner_role(names))
    if names.login_role not in state.roles:
        statements.append(provisioning.create_login_role(names, verifier))
    elif reset_password:
        statements.append(provisioning.set_password(names, verifier))
    return statements


def _grant_statements(
    server: Server, names: naming.TenantNames, mode: Isolation, home: str, state: _State, uid: str
) -> list[sql.Composable]:
    """Mode-specific objects and privileges."""
    statements: list[sql.Composable] = []
    if mode is not Isolation.DATABASE and not state.public_connects:
        # Only where CONNECT was revoked from PUBLIC: a GRANT rewrites the
        # database's catalog row, which tenants provisioned in parallel
        # would otherwise collide on ("tuple concurrently updated").
        statements.append(
            sql.SQL("SELECT pg_advisory_xact_lock({})").format(registry.BOOTSTRAP_LOCK)
        )
        statements.append(provisioning.grant_connect(names, home))
    if mode is Isolation.SCHEMA:
        statements += [
            provisioning.create_schema(names),
            provisioning.grant_schema_access(names),
            provisioning.pin_search_path([names.login_role, names.owner_role], names.schema),
        ]
    elif mode is Isolation.SHARED:
        statements += [
            shared.join_members(names.login_role, state.server_version),
            shared.map_role(server.shared_schema, names.login_role, uid),
            provisioning.pin_search_path([names.login_role], server.shared_schema),
        ]
    else:
        statements.append(
            provisioning.pin_search_path([names.login_role, names.owner_role], "public")
        )
    return statements


def _membership_repairs(
    names: naming.TenantNames, mode: Isolation, state: _State
) -> list[sql.Composable]:
    """A tenant role is a member of nothing but the shared group (shared mode)."""
    allowed = {shared.MEMBERS} if mode is Isolation.SHARED else set()
    return [
        provisioning.revoke_membership(group, naming.Identifier(member))
        for member, group in sorted(state.memberships)
        if group not in allowed
    ]


def _ensure_database(server: Server, names: naming.TenantNames) -> None:
    """CREATE DATABASE (outside any transaction), then lock it down at once."""
    with connecting.connection(server.pool) as conn:
        if conn.execute(databases.exists(), (names.database,)).fetchone() is None:
            conn.execute(databases.create(names))
        conn.execute(databases.restrict_connect(names))
        conn.execute(databases.terminate_connections(), (names.database,))
    url = conninfo.make_conninfo(server.url, dbname=names.database)
    with (
        connecting.translated_errors(),
        psycopg.connect(url, autocommit=True) as tenant_db,
        tenant_db.transaction(),
    ):
        tenant_db.execute(databases.prepare_public_schema(names))


def _delete_shared_rows(conn: psycopg.Connection[Any], schema: naming.Identifier, uid: str) -> None:
    for table in shared.read_tables(conn, schema):
        if table.has_tenant_id:
            conn.execute(shared.delete_rows(schema, table.name), (uid,))


def _orient(conn: psycopg.Connection[Any], server: Server, uid: str) -> tuple[str, bool]:
    """The operator's database, and whether the tenant is new (one round trip)."""
    query = sql.SQL("SELECT current_database(), NOT EXISTS ({})").format(
        registry.fetch(server.control_schema)
    )
    row = conn.execute(query, (uid,)).fetchone()
    assert row is not None
    return str(row[0]), bool(row[1])


def _lock_tenant(conn: psycopg.Connection[Any], uid: str) -> None:
    """Serialise work on one tenant across operator replicas and CLI users."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (TENANT_LOCK_NAMESPACE, uid))


def _register(
    conn: psycopg.Connection[Any], server: Server, request: TenantRequest, location: Provisioned
) -> None:
    record = registry.TenantRecord(
        uid=request.uid,
        name=request.name,
        namespace=request.namespace,
        display_name=request.display_name,
        domain=request.domain,
        isolation=request.isolation.value,
        schema_name=location.schema,
        database_name=location.database,
        owner_role=location.owner_role,
        login_role=location.names.login_role,
        plan=request.plan,
        suspended=request.suspended,
        metadata=dict(request.metadata or {}),
    )
    params = {**asdict(record), "metadata": Jsonb(record.metadata)}
    conn.execute(registry.upsert(server.control_schema), params)


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return conn.execute(provisioning.role_exists(), (role,)).fetchone() is not None


def _domain_conflict(
    conn: psycopg.Connection[Any], control_schema: naming.Identifier, request: TenantRequest
) -> errors.TenantDBError:
    row = conn.execute(
        registry.domain_owner(control_schema), (request.domain, request.uid)
    ).fetchone()
    holder = f" by tenant {row[0]}" if row else ""
    return errors.DomainConflict(f"domain {request.domain!r} is already used{holder}")
