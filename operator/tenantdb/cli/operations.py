"""Day-2 commands: ``tenants health``, ``validate`` and ``reset``.

Each is one call into ``tenantdb.core`` (``usage``, ``validation``,
``resetting``) with the settings the operator itself uses, read when the
command runs. ``reset`` in production needs ``--backup NAME``: a Backup of
that tenant that the API server reports Completed (there is no flag to say
"trust me"); without access to the API server, annotate the Tenant instead
and let the operator take the backup.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenantdb.cli import terminal

if TYPE_CHECKING:
    from tenantdb.core import usage
    from tenantdb.core.migrations import scripts

HEALTH_HEADER = ["NAMESPACE", "NAME", "ISOLATION", "PLAN", "SIZE", "TABLES", "CONNS", "OLDEST TX"]


def register_health(tenant_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tenants health`` to the ``tenants`` group."""
    health = tenant_commands.add_parser(
        "health", help="usage and health of a namespace's tenants, or of one tenant"
    )
    health.add_argument("--namespace", help="only this namespace")
    health.add_argument("--tenant", help="one tenant: UID, namespace/name, or a unique name")
    health.add_argument(
        "--statements", type=int, default=5, help="slowest statements shown for one tenant"
    )
    health.set_defaults(func=_health)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``validate`` and ``reset`` to the ``tenantdb`` command."""
    validate = commands.add_parser(
        "validate", help="check one tenant's integrity against its migrations (changes nothing)"
    )
    _tenant_arguments(validate)
    validate.set_defaults(func=_validate)

    reset = commands.add_parser(
        "reset", help="empty one tenant's data, keep its schema and history, re-run its seeders"
    )
    _tenant_arguments(reset)
    reset.add_argument(
        "--confirm", metavar="NAME", help="the tenant's name, repeated: nothing happens without it"
    )
    reset.add_argument(
        "--backup",
        metavar="NAME",
        help="a Completed Backup of this tenant (required in production; checked on the API server)",
    )
    reset.add_argument(
        "--profile",
        choices=("production", "development"),
        default="production",
        help="the profile the seeders the tenant had run again with (default: production)",
    )
    reset.set_defaults(func=_reset)


def _tenant_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant", required=True, help="tenant UID, namespace/name, or a unique name"
    )
    parser.add_argument(
        "--migrations",
        type=Path,
        default=Path("migrations"),
        help="directory of the migration scripts the tenant's history is read against",
    )


def _health(args: argparse.Namespace) -> int:
    from tenantdb.core import seeding, usage  # noqa: PLC0415 - drivers on demand

    with terminal.failures_reported(), terminal.server(max_connections=2) as server:
        config = terminal.settings()
        uid = None
        if args.tenant:
            uid = seeding.find_tenant(server.pool, server.control_schema, args.tenant).uid
        survey = usage.Survey(visits=1_000_000)  # a CLI run looks inside every database
        found = survey.sweep(server, namespace=args.namespace, uid=uid)
        rows = [_health_row(u) for u in found]
        notes = [_health_note(u, config.usage) for u in found]
        terminal.table(HEALTH_HEADER, rows, notes, "HEALTH", empty="no live tenants")
        if uid is not None and found:
            _print_statements(usage.slowest(server, found[0], args.statements))
        return 0
    return 1


def _health_row(u: usage.TenantUsage) -> list[str]:
    limit = "-" if u.connection_limit is None else str(u.connection_limit)
    size = u.bytes if u.bytes is not None else u.space_bytes
    shown = "-" if size is None else _size(size) + (" (space)" if u.bytes is None else "")
    oldest = "-" if u.oldest_transaction is None else f"{u.oldest_transaction:.0f}s"
    tables = "-" if u.tables is None else str(u.tables)
    return [
        u.namespace,
        u.name,
        u.isolation,
        u.plan,
        shown,
        tables,
        f"{u.connections}/{limit}",
        oldest,
    ]


def _health_note(u: usage.TenantUsage, thresholds: Any) -> str:
    from tenantdb.core import usage  # noqa: PLC0415

    problems = usage.assess(u, thresholds)
    return "; ".join(p.message for p in problems) if problems else "healthy"


def _print_statements(statements: list[usage.SlowStatement] | None) -> None:
    print()
    if statements is None:
        print("slowest statements: pg_stat_statements is not available on this server")
        return
    if not statements:
        print("slowest statements: none recorded for this tenant")
        return
    rows = [[f"{s.mean_ms:.1f}", str(s.calls), f"{s.total_ms:.0f}"] for s in statements]
    queries = [" ".join(s.query.split())[:120] for s in statements]
    terminal.table(["MEAN MS", "CALLS", "TOTAL MS"], rows, queries, "STATEMENT")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TB"


def _scripts(directory: Path) -> list[scripts.Script]:
    from tenantdb.core.migrations import scripts  # noqa: PLC0415

    return scripts.load_directory(directory) if directory.is_dir() else []


def _validate(args: argparse.Namespace) -> int:
    from tenantdb.core import seeding, validation  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server(max_connections=2) as server:
        uid = seeding.find_tenant(server.pool, server.control_schema, args.tenant).uid
        report = validation.validate(server, uid, _scripts(args.migrations))
        where = f"{report.namespace}/{report.name}"
        rows = [[f.kind.value, f.object] for f in report.findings]
        terminal.table(
            ["FINDING", "OBJECT"],
            rows,
            [f.message for f in report.findings],
            "MESSAGE",
            empty=f"{where}: no findings",
        )
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0 if report.passed else 1
    return 2


def _reset(args: argparse.Namespace) -> int:
    from tenantdb.core import resetting, seeding  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server(max_connections=2) as server:
        config = terminal.settings()
        found = seeding.find_tenant(server.pool, server.control_schema, args.tenant)
        resetting.check_confirmation(found.name, args.confirm)
        backup = _checked_backup(args.backup, found.namespace, found.uid) if args.backup else None
        report = resetting.reset(
            server,
            found.uid,
            args.confirm,
            _scripts(args.migrations),
            environment=config.environment.value,
            backup=backup,
        )
        print(f"{found.namespace}/{found.name}: emptied {len(report.emptied)} tables", end="")
        print(f", kept {', '.join(report.kept)}" if report.kept else "")
        if report.forgotten:  # the seeders it had, no others
            report.reseeded = resetting.reseed(
                server,
                found.uid,
                args.profile,
                config.environment.value,
                config.seeders_dir,
                terminal.who(),
                only=report.forgotten,
            )
        print(f"seeders run again: {', '.join(report.reseeded) or 'none'}")
        return 0
    return 1


def _checked_backup(name: str, namespace: str, uid: str) -> str:
    """``name`` if the API server has it as a Completed Backup of this very tenant."""
    from tenantdb.api import GROUP, VERSION  # noqa: PLC0415
    from tenantdb.controllers import kube  # noqa: PLC0415 - the API server only when asked
    from tenantdb.core import resetting  # noqa: PLC0415

    kube.login()
    found = kube.read_custom_object(GROUP, VERSION, namespace, "backups", name)
    status = (found or {}).get("status") or {}
    if found is None:
        raise resetting.ResetRefused(f"no Backup {namespace}/{name}")
    if status.get("tenantUid") != uid or status.get("phase") != "Completed":
        raise resetting.ResetRefused(
            f"Backup {namespace}/{name} is not a Completed backup of this tenant"
            f" (phase {status.get('phase') or 'Pending'})"
        )
    return name
