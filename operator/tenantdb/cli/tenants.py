"""``tenantdb tenants``: the tenant registry, read straight from PostgreSQL.

The same table the operator writes, so it answers even when the API server
is down or the Tenant objects are gone (a retained tenant).
"""

from __future__ import annotations

import argparse

from tenantdb.cli import operations, terminal

HEADER = ["NAMESPACE", "NAME", "ISOLATION", "PLAN", "STATE", "DATABASE", "SCHEMA", "ROLE"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tenants list`` and ``tenants health`` to the ``tenantdb`` command."""
    tenants = commands.add_parser("tenants", help="the tenant registry")
    tenants.set_defaults(func=lambda _: terminal.usage(tenants))
    tenant_commands = tenants.add_subparsers(title="tenants commands")
    listing = tenant_commands.add_parser("list", help="every registered tenant, live and retained")
    listing.add_argument("--namespace", help="only this namespace")
    listing.set_defaults(func=_list)
    operations.register_health(tenant_commands)


def _list(args: argparse.Namespace) -> int:
    from tenantdb.core import commands  # noqa: PLC0415 - database drivers only when needed

    with terminal.failures_reported(), terminal.server(max_connections=1) as server:
        entries = commands.list_tenants(server, args.namespace)
        rows = [
            [
                r.namespace,
                r.name,
                r.isolation,
                r.plan,
                "retained" if retained else ("suspended" if r.suspended else "active"),
                r.database_name,
                r.schema_name or "-",
                r.login_role,
            ]
            for r, retained in entries
        ]
        domains = [r.domain or "" for r, _ in entries]
        terminal.table(HEADER, rows, domains, "DOMAIN", empty="no tenants")
    return 0
