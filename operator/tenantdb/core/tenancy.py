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
from psycopg import conninfo
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
        home = _current_database(conn)
        location = _location(server, names, mode, home)
        is_new = (
            conn.execute(registry.fetch(server.control_schema), (request.uid,)).fetchone() is None
        )
        try:
            with conn.transaction():
                _lock_tenant(conn, request.uid)
                _register(conn, server, request, location)
                _ensure_roles(conn, names, mode, password, reset_password)
                conn.execute(
                    provisioning.configure_login_role(
                        names, request.limits, request.suspended, inherit=mode is Isolation.SHARED
                    )
                )
                _grant(conn, server, names, mode, home, request.uid)
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
        row = conn.execute(registry.fetch(server.control_schema), (uid,)).fetchone()
        mode = Isolation(row[5]) if row else Isolation.SCHEMA
        if drop and mode is Isolation.DATABASE:
            conn.execute(databases.drop(names))
        with conn.transaction():
            _lock_tenant(conn, uid)
            existing = [r for r in (names.login_role, names.owner_role) if _role_exists(conn, r)]
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


def _grant(
    conn: psycopg.Connection[Any],
    server: Server,
    names: naming.TenantNames,
    mode: Isolation,
    home: str,
    uid: str,
) -> None:
    """Mode-specific objects and privileges, inside the provisioning transaction."""
    if mode is not Isolation.DATABASE:
        _ensure_connect(conn, names, home)
    if mode is Isolation.SCHEMA:
        conn.execute(provisioning.create_schema(names))
        conn.execute(provisioning.grant_schema_access(names))
        conn.execute(
            provisioning.pin_search_path([names.login_role, names.owner_role], names.schema)
        )
    elif mode is Isolation.SHARED:
        conn.execute(shared.join_members(names.login_role, conn.info.server_version))
        conn.execute(shared.map_role(server.shared_schema), (names.login_role, uid))
        conn.execute(provisioning.pin_search_path([names.login_role], server.shared_schema))
    else:
        conn.execute(provisioning.pin_search_path([names.login_role, names.owner_role], "public"))
    _revoke_foreign_memberships(conn, names, mode)


def _ensure_connect(conn: psycopg.Connection[Any], names: naming.TenantNames, home: str) -> None:
    """Grant CONNECT on the shared database only if PUBLIC lacks it.

    A GRANT rewrites the database's catalog row; tenants provisioned in
    parallel would collide on it ("tuple concurrently updated"), so the
    rare grant is serialised and the common case touches nothing.
    """
    row = conn.execute(provisioning.can_connect(), (names.login_role, home)).fetchone()
    if row is not None and not row[0]:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (registry.BOOTSTRAP_LOCK,))
        conn.execute(provisioning.grant_connect(names, home))


def _revoke_foreign_memberships(
    conn: psycopg.Connection[Any], names: naming.TenantNames, mode: Isolation
) -> None:
    """A tenant role is a member of nothing but the shared group (shared mode)."""
    allowed = {shared.MEMBERS} if mode is Isolation.SHARED else set()
    for role in (names.login_role, names.owner_role):
        for (group,) in conn.execute(provisioning.memberships(), (role,)).fetchall():
            if group not in allowed:
                conn.execute(provisioning.revoke_membership(group, role))


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
    rows = conn.execute(shared.tables(), (list(shared.POLICIES), schema, shared.MAPPING_TABLE))
    for name, *_, has_tenant_id, _policies, _owner in rows.fetchall():
        if has_tenant_id:
            conn.execute(shared.delete_rows(schema, name), (uid,))


def _current_database(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


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


def _ensure_roles(
    conn: psycopg.Connection[Any],
    names: naming.TenantNames,
    mode: Isolation,
    password: str,
    reset_password: bool,
) -> None:
    if mode is not Isolation.SHARED and not _role_exists(conn, names.owner_role):
        conn.execute(provisioning.create_owner_role(names))
    verifier = passwords.scram_verifier(password)
    if not _role_exists(conn, names.login_role):
        conn.execute(provisioning.create_login_role(names, verifier))
    elif reset_password:
        conn.execute(provisioning.set_password(names, verifier))


def _domain_conflict(
    conn: psycopg.Connection[Any], control_schema: naming.Identifier, request: TenantRequest
) -> errors.TenantDBError:
    row = conn.execute(
        registry.domain_owner(control_schema), (request.domain, request.uid)
    ).fetchone()
    holder = f" by tenant {row[0]}" if row else ""
    return errors.DomainConflict(f"domain {request.domain!r} is already used{holder}")
