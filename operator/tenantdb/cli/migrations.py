"""The migration commands of ``tenantdb``: ``migrations render`` and ``migrate status|up|down|repair``.

Owns their arguments and what they print (manifests, the ledger as a
table, a progress bar); every operation is a call into
``tenantdb.core.migrations.commands`` with the settings the operator itself
would use (``DATABASE_URL``, ...), read when the command runs. ``migrate``
works on the database directly, without Kubernetes, under the same
per-tenant advisory locks as the operator, and records ``cli:<user>`` as
who applied each change.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenantdb.cli import terminal

if TYPE_CHECKING:
    from tenantdb.api import migrations as api
    from tenantdb.core import commands as core_commands
    from tenantdb.core import scoping
    from tenantdb.core.migrations import outcomes, rollout, scripts


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``migrations`` and ``migrate`` to the ``tenantdb`` command."""
    group = commands.add_parser("migrations", help="the versioned SQL scripts of a directory")
    group.set_defaults(func=lambda _: terminal.usage(group))
    render = group.add_subparsers(title="migrations commands").add_parser(
        "render", help="Migration manifests, for `kubectl apply -f -` or a kustomization"
    )
    render.add_argument("directory", type=Path, help="directory of <version>_<words>.sql files")
    render.add_argument("--namespace", help="set metadata.namespace on every manifest")
    render.add_argument(
        "--out", type=Path, help="write one file per migration and a kustomization.yaml here"
    )
    render.set_defaults(func=_render)

    migrate = commands.add_parser(
        "migrate", help="apply, roll back and inspect migrations on the database directly"
    )
    migrate.set_defaults(func=lambda _: terminal.usage(migrate))
    sub = migrate.add_subparsers(title="migrate commands")
    status = sub.add_parser("status", help="the migration ledger as a table")
    status.add_argument("--namespace", help="only this namespace's tenants")
    status.add_argument("--tenant", help="every version of the tenant(s) of this name")
    status.set_defaults(func=_status)

    up = sub.add_parser("up", help="apply a directory's scripts in version order, with progress")
    _rollout_arguments(up)
    up.add_argument("--to", type=int, help="stop after this version (default: all)")
    up.add_argument("--dry-run", action="store_true", help="run each script and roll it back")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="roll back every version above --to, newest first")
    _rollout_arguments(down)
    down.add_argument("--to", type=int, required=True, help="the version to end at (0: none)")
    down.set_defaults(func=_down)

    repair = sub.add_parser(
        "repair", help="accept the directory's text of applied versions (the drift override)"
    )
    repair.add_argument("directory", type=Path)
    repair.add_argument("--namespace", default="default", help="tenants of this namespace")
    repair.add_argument("--version", type=int, action="append", default=[], help="(repeatable)")
    repair.set_defaults(func=_repair)


def _rollout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, help="directory of <version>_<words>.sql files")
    parser.add_argument("--namespace", default="default", help="tenants of this namespace")
    parser.add_argument(
        "--tenant", action="append", default=[], help="only this tenant (name, repeatable)"
    )
    parser.add_argument("--max-parallel", type=int, default=4, help="tenants at once")
    parser.add_argument(
        "--continue-on-failure", action="store_true", help="go on after a tenant fails"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")


def _render(args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from tenantdb.core.migrations import scripts  # noqa: PLC0415

    with terminal.failures_reported():
        loaded = scripts.load_directory(args.directory)
        manifests = [scripts.manifest(s, args.namespace) for s in loaded]
        if args.out is None:
            text = yaml.dump_all(manifests, Dumper=_dumper(), sort_keys=False, width=100)
            sys.stdout.write(text)
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        files = []
        for manifest in manifests:
            name = f"{manifest['metadata']['name']}.yaml"
            text = yaml.dump(manifest, Dumper=_dumper(), sort_keys=False, width=100)
            (args.out / name).write_text(text)
            files.append(name)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": files,
        }
        (args.out / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        print(f"wrote {len(files)} migration(s) and kustomization.yaml to {args.out}")
        return 0
    return 1


def _status(args: argparse.Namespace) -> int:
    from tenantdb.core.migrations import commands  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server() as server:
        if args.tenant:
            rows = commands.history(server, args.namespace, args.tenant)
            header = ["NAMESPACE", "TENANT", "VERSION", "STATE", "ATTEMPTS", "MS", "BY", "AT"]
            cells = [
                [
                    r["namespace"],
                    r["tenant_name"],
                    str(r["version"]),
                    r["state"],
                    str(r["attempts"]),
                    str(r["duration_ms"] if r["duration_ms"] is not None else "-"),
                    r["applied_by"],
                    _when(r["applied_at"]),
                ]
                for r in rows
            ]
            terminal.table(
                header, cells, [r["error"] or "" for r in rows], "ERROR", empty="no ledger rows"
            )
            return 0
        summary = commands.status(server, args.namespace)
        header = [
            "NAMESPACE",
            "VERSION",
            "SCOPE",
            "APPLIED",
            "FAILED",
            "RETRYING",
            "ROLLED BACK",
            "LAST",
        ]
        cells = [
            [
                r["namespace"],
                str(r["version"]),
                r["scope"],
                str(r["applied"]),
                str(r["failed"]),
                str(r["retrying"]),
                str(r["rolled_back"]),
                _when(r["last_applied"]),
            ]
            for r in summary
        ]
        notes = [
            r["description"] + (" (checksums differ: drift)" if r["checksums"] > 1 else "")
            for r in summary
        ]
        terminal.table(header, cells, notes, "DESCRIPTION", empty="no ledger rows")
        return 0
    return 1


def _up(args: argparse.Namespace) -> int:
    from tenantdb.core.migrations import scripts  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server() as server:
        loaded = scripts.load_directory(args.directory)
        chosen = [s for s in loaded if args.to is None or s.version <= args.to]
        return _roll(server, args, chosen, loaded, backwards=False)
    return 1


def _down(args: argparse.Namespace) -> int:
    from tenantdb.core.migrations import scripts  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server() as server:
        loaded = scripts.load_directory(args.directory)
        chosen = [s for s in reversed(loaded) if s.version > args.to]
        return _roll(server, args, chosen, loaded, backwards=True)
    return 1


def _roll(
    server: core_commands.Server,
    args: argparse.Namespace,
    chosen: Sequence[scripts.Script],
    loaded: Sequence[scripts.Script],
    backwards: bool,
) -> int:
    """Each script on every targeted tenant, one script at a time; stop at the first failure."""
    from tenantdb.core.migrations import commands, rollout  # noqa: PLC0415

    who = terminal.who()
    targets_of = _Targets(server, args.namespace, args.tenant)
    policy = rollout.Policy(
        max_parallel=args.max_parallel, failure_budget=None if args.continue_on_failure else 0
    )
    for script in chosen:
        targets = targets_of(script)
        bar = None if args.quiet else RolloutBar(f"{script.name}", len(targets))
        try:
            if backwards:
                report = commands.downgrade(
                    server, script, targets, applied_by=who, policy=policy, on_result=bar
                )
            else:
                same_scope = [
                    s.version
                    for s in loaded
                    if s.version < script.version and s.scope is script.scope
                ]
                report = commands.upgrade(
                    server,
                    script,
                    targets,
                    applied_by=who,
                    policy=policy,
                    requires={t.uid: same_scope for t in targets},
                    dry_run=args.dry_run,
                    on_result=bar,
                )
        finally:
            if bar is not None:
                bar.close()
        settled = _summary(script, report)
        if not (settled or (args.continue_on_failure and not report.halted)):
            return 1
    return 0


class _Targets:
    """The targets of each scope, looked up once per command (the live tenants are
    one query), limited to ``--tenant`` where given."""

    def __init__(
        self, server: core_commands.Server, namespace: str, names: Sequence[str] = ()
    ) -> None:
        self.server, self.namespace, self.names = server, namespace, frozenset(names)
        self._found: dict[api.Scope, list[scoping.TenantLocation]] = {}

    def __call__(self, script: scripts.Script) -> list[scoping.TenantLocation]:
        if script.scope not in self._found:
            self._found[script.scope] = self._lookup(script.scope)
        return self._found[script.scope]

    def _lookup(self, scope: api.Scope) -> list[scoping.TenantLocation]:
        from tenantdb.api import migrations as api_migrations  # noqa: PLC0415
        from tenantdb.core.migrations import commands  # noqa: PLC0415

        found = commands.targets(self.server, self.namespace, scope)
        if self.names and scope is api_migrations.Scope.TENANT:
            found = [t for t in found if t.name in self.names]
            missing = self.names - {t.name for t in found}
            if missing:
                raise SystemExit(f"tenantdb: no live tenant {', '.join(sorted(missing))} here")
        return found


def _repair(args: argparse.Namespace) -> int:
    from tenantdb.core.migrations import commands, scripts  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server() as server:
        targets_of = _Targets(server, args.namespace)
        for script in scripts.load_directory(args.directory):
            if args.version and script.version not in args.version:
                continue
            targets = targets_of(script)
            changed = commands.accept_checksum(server, script, targets)
            if changed:
                print(
                    f"{script.name}: checksum {script.checksum[:12]} accepted on {changed} tenant(s)"
                )
        return 0
    return 1


def _summary(script: scripts.Script, report: rollout.Report) -> bool:
    """Print what happened to one script; whether every tenant is where it should be."""
    counts: dict[str, int] = {}
    for result in report.results:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no tenants"
    print(f"{script.name}: {parts}")
    for result in report.results:
        if not result.outcome.done:
            waiting = (
                f" (needs {', '.join(map(str, result.waiting_for))})" if result.waiting_for else ""
            )
            print(
                f"  {result.tenant.name}: {result.outcome.value}{waiting} {result.error or ''}".rstrip()
            )
    return all(r.outcome.done for r in report.results) and not report.canaries_unfinished


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _dumper() -> type[Any]:
    import yaml  # noqa: PLC0415

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (the SQL) as literal blocks, so manifests read like the files."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


class RolloutBar:
    """Progress of one migration across tenants (called from worker threads)."""

    def __init__(self, title: str, total: int, bar: terminal.Bar | None = None) -> None:
        self.bar = bar or terminal.Bar(title)
        from tenantdb.core.migrations import outcomes  # noqa: PLC0415

        self.total = total
        self.failure = outcomes.Outcome.FAILED
        self.done = self.failed = 0
        self._step = max(total // 10, 1)
        self._lock = threading.Lock()

    def __call__(self, result: outcomes.Result) -> None:
        """Count one tenant's result."""
        with self._lock:
            self.done += 1
            self.failed += int(result.outcome is self.failure)
            counts = f"{self.done}/{self.total} ({self.failed} failed)"
            self.bar.draw(self.done / max(self.total, 1), f"{counts} {result.tenant.name}")
            if self.done % self._step == 0 or self.done == self.total:
                self.bar.line(counts)

    def close(self) -> None:
        """End the bar's line."""
        self.bar.close()
