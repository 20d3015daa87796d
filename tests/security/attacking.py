"""Helpers of the namespace-boundary attacks: Migrations sent with a user's token, what
they recorded, and what lies outside the attacking tenant.

Every Migration here is applied, watched and deleted with the namespace
user's kubeconfig; the superuser connection (``admin``) only reads.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from tenantdb.core import connect_group
from tests.security import rbac
from tests.security.conftest import Boundary, Tenant

TERMINAL = ("Succeeded", "Failed", "Halted")
GROUP = connect_group.role_name("tenantdb_operator")
"""The connect group every schema and shared tenant is a member of."""
TIMEOUT = 120.0


def migration(
    user: rbac.NamespaceUser, name: str, version: int, up: str, target: str, **spec: Any
) -> dict[str, Any]:
    """Apply a Migration aimed at tenant ``target`` alone, wait for its verdict, delete it.

    Returns the final status. Deleting it afterwards keeps later attacks
    from waiting on a halted version.
    """
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "up": up,
            "tenantSelector": {"matchLabels": {"boundary": target}},
            **spec,
        },
    }
    user.kubectl.apply(json.dumps(body))
    try:
        return wait_verdict(user, name)
    finally:
        user.kubectl.run("delete", "migration", name, "--wait=true", "--timeout=60s")


def wait_verdict(user: rbac.NamespaceUser, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = user.kubectl.get("migration", name).get("status") or {}
        if status.get("phase") in TERMINAL and status.get("finishedAt"):
            return status
        assert time.monotonic() < deadline, f"migration {name} never finished: {status}"
        time.sleep(0.5)


def ready(status: dict[str, Any]) -> dict[str, str]:
    return next(c for c in status.get("conditions") or [] if c["type"] == "Ready")


def failure(status: dict[str, Any], tenant: str) -> str:
    """The error status reports for one tenant (the test fails if there is none)."""
    errors = {f["tenant"]: f["error"] for f in status.get("failures") or []}
    assert tenant in errors, f"no failure reported for {tenant}: {status}"
    return str(errors[tenant])


def whoami(admin: psycopg.Connection, tenant: Tenant, prefix: str) -> list[tuple[Any, ...]]:
    """Rows an attack recorded: (label, session_user, current_user, error)."""
    return admin.execute(
        f'SELECT label, session_role, current_role_name, error FROM "{tenant.status["schema"]}".whoami'
        " WHERE label LIKE %s ORDER BY at",
        (prefix + "%",),
    ).fetchall()


def tripwire(admin: psycopg.Connection, tenant: Tenant) -> list[str]:
    """Names of planted objects that something called."""
    rows = admin.execute(
        f'SELECT name FROM "{tenant.status["schema"]}".tripwire ORDER BY at'
    ).fetchall()
    return [str(r[0]) for r in rows]


def outside(admin: psycopg.Connection, boundary: Boundary, attacker: Tenant) -> dict[str, Any]:
    """Everything an attack from ``attacker`` must leave as it was.

    Roles that are not tenant roles, and every role of the boundary's
    tenants (attributes, connection limit); memberships among them; their
    role settings except the attacker's; the control schema's relations
    and ACLs; the registry rows of both namespaces; the ledger of every
    tenant but the attacker; locks; the other tenants' notes.
    """
    namespaces = [boundary.a.namespace, boundary.b.namespace]
    ours = admin.execute(
        "SELECT owner_role, login_role FROM tenantdb.tenants WHERE namespace = ANY(%s)",
        (namespaces,),
    ).fetchall()
    roles = sorted({r for pair in ours for r in pair})
    # The boundary's tenant roles, the privileged ones (predefined, superusers, the
    # operator's), and any role holding a dangerous attribute: what an escape would
    # change. Other suites' roles come and go with the operator's own work meanwhile.
    privileged = (
        "rolname LIKE 'pg\\_%%' OR rolname IN ('postgres', 'tenantdb_operator', %(group)s)"
        " OR rolsuper OR rolbypassrls OR rolreplication OR rolcreaterole OR rolcreatedb"
    )
    watched = f"(rolname = ANY(%(roles)s) OR {privileged})"
    found: dict[str, Any] = {
        "roles": admin.execute(
            "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,"
            " rolreplication, rolbypassrls, rolconnlimit FROM pg_roles"
            f" WHERE {watched} ORDER BY 1",
            {"roles": roles, "group": GROUP},
        ).fetchall(),
        "memberships": admin.execute(
            "SELECT r.rolname, m.rolname, a.admin_option, a.inherit_option, a.set_option"
            " FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
            " JOIN pg_roles m ON m.oid = a.member"
            " WHERE r.rolname = ANY(%(roles)s) OR m.rolname = ANY(%(roles)s)"
            " OR r.rolname LIKE 'pg\\_%%' OR r.rolname IN ('postgres', 'tenantdb_operator')"
            " OR m.rolname = %(group)s"
            # A role may hold one membership from several grantors: order them all.
            " ORDER BY 1, 2, 3, 4, 5",
            {"roles": roles, "group": GROUP},
        ).fetchall(),
        "settings": admin.execute(
            "SELECT r.rolname, s.setdatabase, s.setconfig FROM pg_db_role_setting s"
            " JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = ANY(%s)"
            " AND r.rolname NOT IN (%s, %s) ORDER BY 1, 2",
            (roles, attacker.status["ownerRole"], attacker.status["role"]),
        ).fetchall(),
        "control": admin.execute(
            "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'tenantdb' ORDER BY 1"
        ).fetchall(),
        "schemas": admin.execute(
            "SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace"
            " WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'"
            " AND (nspname NOT LIKE 't\\_%%' OR nspname IN"
            " (SELECT schema_name FROM tenantdb.tenants WHERE namespace = ANY(%s))) ORDER BY 1",
            (namespaces,),
        ).fetchall(),
        "registry": admin.execute(
            "SELECT uid, name, namespace, isolation, schema_name, database_name, owner_role,"
            " login_role, plan, suspended, retained_at FROM tenantdb.tenants"
            " WHERE namespace = ANY(%s) ORDER BY uid",
            (namespaces,),
        ).fetchall(),
        "ledger": admin.execute(
            "SELECT tenant_uid, version, state, checksum FROM tenantdb.migration_ledger"
            " WHERE namespace = ANY(%s) AND tenant_uid <> %s ORDER BY 1, 2",
            (namespaces, attacker.uid),
        ).fetchall(),
        "extensions": admin.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall(),
        "large objects": admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchall(),
    }
    for name, tenant in boundary.tenants.items():
        if tenant.uid != attacker.uid and name != "doomed":
            found[f"notes of {name}"] = admin.execute(
                f'SELECT * FROM "{tenant.status["schema"]}".notes ORDER BY id'
            ).fetchall()
    return found
