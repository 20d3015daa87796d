"""The operations both the CLI and the controllers call.

Each function takes a pool and plain values, does one unit of work in one
transaction where PostgreSQL allows it, and raises only ``errors`` classes.
Nothing here knows about Kubernetes.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from tenantdb.api.tenants import Isolation
from tenantdb.core import connecting, errors, naming, passwords, provisioning, registry
from tenantdb.settings import PlanLimits

TENANT_LOCK_NAMESPACE = 0x7E4A
"""First key of the per-tenant advisory lock (second: a hash of the UID)."""


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
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Provisioned:
    """Where the tenant's data lives, for status and the credentials Secret."""

    names: naming.TenantNames
    database: str
    schema: str | None


def provision(
    pool: psycopg_pool.ConnectionPool,
    control_schema: naming.Identifier,
    request: TenantRequest,
    password: str,
    reset_password: bool,
) -> Provisioned:
    """Create or converge a tenant: registry row, roles, schema, grants.

    Everything happens in one transaction: a refusal (a domain already
    taken) leaves nothing behind. ``password`` is used when the login role
    is created, or always when ``reset_password`` is set.
    """
    if request.isolation is not Isolation.SCHEMA:
        raise errors.ProvisioningError(
            f"isolation {request.isolation.value!r} is not supported yet"
        )
    names = naming.tenant_names(request.name, request.uid)
    with connecting.connection(pool) as conn:
        database = _current_database(conn)
        try:
            with conn.transaction():
                _lock_tenant(conn, request.uid)
                _register(conn, control_schema, request, names, database)
                _ensure_roles(conn, names, password, reset_password)
                conn.execute(provisioning.create_schema(names))
                conn.execute(provisioning.grant_schema_access(names, database))
                conn.execute(provisioning.pin_search_path(names, names.schema))
                conn.execute(
                    provisioning.configure_login_role(names, request.limits, request.suspended)
                )
                conn.execute(provisioning.harden_public_schema())
        except psycopg.errors.UniqueViolation as exc:
            raise _domain_conflict(conn, control_schema, request) from exc
        if request.suspended:
            conn.execute(provisioning.terminate_sessions(), (names.login_role,))
    return Provisioned(names=names, database=database, schema=names.schema)


def deprovision(
    pool: psycopg_pool.ConnectionPool,
    control_schema: naming.Identifier,
    uid: str,
    name: str,
    drop: bool,
) -> None:
    """Carry out a deletion policy: drop everything, or retain data and disable login."""
    names = naming.tenant_names(name, uid)
    with connecting.connection(pool) as conn, conn.transaction():
        _lock_tenant(conn, uid)
        existing = [r for r in (names.login_role, names.owner_role) if _role_exists(conn, r)]
        if names.login_role in existing:
            conn.execute(provisioning.terminate_sessions(), (names.login_role,))
        if not drop:
            if names.login_role in existing:
                conn.execute(provisioning.disable_login(names))
            conn.execute(registry.mark_retained(control_schema), (uid,))
            return
        conn.execute(provisioning.drop_schema(names))
        if existing:
            conn.execute(provisioning.drop_roles(existing))
        conn.execute(registry.forget(control_schema), (uid,))


def prepare(pool: psycopg_pool.ConnectionPool, control_schema: naming.Identifier) -> int:
    """Create or upgrade the control schema; return its version."""
    with connecting.connection(pool) as conn:
        return registry.ensure_control_schema(conn, control_schema)


def _current_database(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def _lock_tenant(conn: psycopg.Connection[Any], uid: str) -> None:
    """Serialise work on one tenant across operator replicas and CLI users."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (TENANT_LOCK_NAMESPACE, uid))


def _register(
    conn: psycopg.Connection[Any],
    control_schema: naming.Identifier,
    request: TenantRequest,
    names: naming.TenantNames,
    database: str,
) -> None:
    record = registry.TenantRecord(
        uid=request.uid,
        name=request.name,
        namespace=request.namespace,
        display_name=request.display_name,
        domain=request.domain,
        isolation=request.isolation.value,
        schema_name=names.schema,
        database_name=database,
        owner_role=names.owner_role,
        login_role=names.login_role,
        plan=request.plan,
        suspended=request.suspended,
        metadata=dict(request.metadata),
    )
    params = {**asdict(record), "metadata": Jsonb(record.metadata)}
    conn.execute(registry.upsert(control_schema), params)


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return conn.execute(provisioning.role_exists(), (role,)).fetchone() is not None


def _ensure_roles(
    conn: psycopg.Connection[Any], names: naming.TenantNames, password: str, reset_password: bool
) -> None:
    if not _role_exists(conn, names.owner_role):
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
