"""The seeding commands of ``tenantdb``: ``seeders list``, ``seed``, ``unseed``.

Owns their arguments and what they print (a table, a progress bar, a
summary); every operation is one call into ``tenantdb.core.seeding``, with
the settings the operator itself would use (``DATABASE_URL``,
``TENANTDB_ENVIRONMENT``, ``TENANTDB_SEEDERS_DIR``, ...), read when the
command runs. The environment guard is the operator's: in production
development data is refused, and there is no prompt to get past it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tenantdb.cli import terminal

if TYPE_CHECKING:
    from tenantdb import settings as settings_
    from tenantdb.core import commands, scoping
    from tenantdb.core.seeding import reports

PROFILES = ("production", "development")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``seeders``, ``seed`` and ``unseed`` to the ``tenantdb`` command."""
    seeders = commands.add_parser("seeders", help="the seeders of the seeders directory")
    seeders.set_defaults(func=lambda _: terminal.usage(seeders))
    seeder_commands = seeders.add_subparsers(title="seeders commands")
    listing = seeder_commands.add_parser(
        "list", help="name, version, profile and dependencies of every seeder, in run order"
    )
    _directory_argument(listing)
    listing.add_argument("--tenant", help="also show the version each seeder has on this tenant")
    listing.set_defaults(func=_list)

    seed = commands.add_parser("seed", help="run the seeders a tenant lacks, with a progress bar")
    _tenant_arguments(seed, "run only this seeder and what it depends on (repeatable)")
    seed.add_argument(
        "--profile",
        choices=PROFILES,
        default="production",
        help="production: production seeders only (default); development: both",
    )
    seed.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="SEEDER.NAME=VALUE",
        help="a run-time option of one seeder, e.g. demo_history.users=200 (repeatable)",
    )
    seed.set_defaults(func=_seed)

    unseed = commands.add_parser(
        "unseed", help="remove what development seeders added to a tenant (production data stays)"
    )
    _tenant_arguments(unseed, "remove only this seeder's data and its dependents' (repeatable)")
    unseed.set_defaults(func=_unseed)


def _directory_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="seeders directory (default: TENANTDB_SEEDERS_DIR, else the repository's seeders/)",
    )


def _tenant_arguments(parser: argparse.ArgumentParser, only_help: str) -> None:
    parser.add_argument(
        "--tenant",
        required=True,
        help="tenant UID, namespace/name, or a name unique across namespaces",
    )
    parser.add_argument(
        "--seeder", action="append", default=[], dest="only", metavar="NAME", help=only_help
    )
    _directory_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the summary")


def _list(args: argparse.Namespace) -> int:
    from tenantdb.core import seeding  # noqa: PLC0415 - database drivers only when needed

    with terminal.failures_reported(_explain):
        config = terminal.settings()
        seeders = seeding.list_seeders(args.dir or config.seeders_dir)
        applied: dict[str, str] = {}
        if args.tenant:
            with _server(config) as server:
                control = config.database.control_schema
                uid = seeding.find_tenant(server.pool, control, args.tenant).uid
                applied = {
                    name: str(entry.version)
                    for name, entry in seeding.tenant_history(server.pool, control, uid).items()
                }
        header = ["NAME", "VERSION", "PROFILE", "KIND", "DEPENDS ON"]
        header += ["APPLIED"] if args.tenant else []
        rows = [
            [
                s.name,
                str(s.version),
                s.profile.value,
                s.kind.value,
                ", ".join(s.depends_on) or "-",
                *([applied.get(s.name, "-")] if args.tenant else []),
            ]
            for s in seeders
        ]
        terminal.table(
            header, rows, [s.description for s in seeders], "DESCRIPTION", empty="no seeders"
        )
        return 0
    return 1


def _seed(args: argparse.Namespace) -> int:
    from tenantdb.core import seeding  # noqa: PLC0415 - database drivers only when needed

    with terminal.failures_reported(_explain):
        options = dict(_option(text) for text in args.option)
        with _on_tenant(args, "seeding") as (config, server, tenant, bar):
            db = config.database
            report = seeding.seed_tenant(
                server.pool,
                db.control_schema,
                db.shared_schema,
                server.sessions,
                tenant.uid,
                args.profile,
                args.only,
                config.environment.value,
                args.dir or config.seeders_dir,
                bar,
                applied_by=terminal.who(),
                options=options,
            )
        _summary(report)
        return 0
    return 1


def _unseed(args: argparse.Namespace) -> int:
    from tenantdb.core import seeding  # noqa: PLC0415 - database drivers only when needed

    with terminal.failures_reported(_explain):
        with _on_tenant(args, "unseeding") as (config, server, tenant, bar):
            db = config.database
            report = seeding.unseed_tenant(
                server.pool,
                db.control_schema,
                db.shared_schema,
                server.sessions,
                tenant.uid,
                args.dir or config.seeders_dir,
                args.only,
                bar,
            )
        _summary(report)
        return 0
    return 1


@contextmanager
def _on_tenant(
    args: argparse.Namespace, verb: str
) -> Iterator[
    tuple[settings_.Settings, commands.Server, scoping.TenantLocation, ProgressBar | None]
]:
    """Settings, the server, the tenant named by ``--tenant`` and a progress bar (unless quiet)."""
    from tenantdb.core import seeding  # noqa: PLC0415 - database drivers only when needed

    config = terminal.settings()
    with _server(config) as server:
        tenant = seeding.find_tenant(server.pool, config.database.control_schema, args.tenant)
        bar = None if args.quiet else ProgressBar(f"{verb} {tenant.namespace}/{tenant.name}")
        try:
            yield config, server, tenant, bar
        finally:
            if bar is not None:
                bar.close()


@contextmanager
def _server(config: settings_.Settings) -> Iterator[commands.Server]:
    """The server without the schema bootstrap ``terminal.server`` runs: two connections."""
    from tenantdb.core import commands  # noqa: PLC0415 - database drivers only when needed

    server = commands.open_server(config.database, "tenantdb-cli", max_size=2)
    try:
        yield server
    finally:
        server.close()


def _option(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or "." not in key:
        raise SystemExit(f"tenantdb: --option {text!r} must look like seeder.name=value")
    return key, value


def _summary(report: reports.SeedReport, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    rows = [
        [r.name, f"v{r.version}", r.outcome.value, f"{r.rows} rows", f"{r.seconds:.2f}s"]
        for r in report.results
    ]
    terminal.table(None, rows, [r.detail for r in report.results], out=out, empty="no seeders")
    for warning in report.warnings:
        print(f"warning: {warning}", file=out)
    print(report.summary(), file=out)


class ProgressBar:
    """Progress of one tenant's seeders: a bar on a terminal, a line per seeder elsewhere."""

    def __init__(
        self, title: str, stream: TextIO | None = None, is_tty: Callable[[], bool] | None = None
    ) -> None:
        self.bar = terminal.Bar(title, stream, is_tty)

    def __call__(self, event: reports.ProgressEvent) -> None:
        from tenantdb.core.seeding import reports  # noqa: PLC0415

        finished = event.state in (
            reports.State.APPLIED,
            reports.State.SKIPPED,
            reports.State.REMOVED,
            reports.State.FAILED,
        )
        fraction = (event.position - (0 if finished else 1)) / max(event.total, 1)
        if event.state is reports.State.ROWS and event.expected:
            fraction += min(event.done / event.expected, 1.0) / max(event.total, 1)
        detail = (
            f"{event.done}/{event.expected}" if event.state is reports.State.ROWS else event.state
        )
        text = f"{event.position}/{event.total} {event.seeder} {detail}"
        self.bar.draw(fraction, text)
        if finished:
            self.bar.line(text)

    def close(self) -> None:
        """End the bar's line."""
        self.bar.close()


def _explain(exc: Exception) -> None:
    """After a failed run, the seeders that did run before it."""
    report = getattr(exc, "report", None)
    if report is not None and report.results:
        _summary(report, stream=sys.stderr)
