"""The ``tenantdb`` command: run the operator, generate CRDs, drive the dev stack."""

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tenantdb import settings
from tenantdb.api import crds, reference
from tenantdb.cli import backups, migrations, operations, seeding, tenants


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenantdb", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="run the operator (kopf) against the current kubeconfig")
    run.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        help="watch this namespace; repeat for more "
        "(default: TENANTDB_NAMESPACE, comma-separated; unset: all namespaces)",
    )
    run.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument(
        "--log-format",
        choices=["full", "json"],
        default=os.environ.get("TENANTDB_LOG_FORMAT", "full"),
        help="log lines for humans (full) or for log pipelines (json)",
    )
    run.add_argument(
        "--peering",
        default=None,
        help="meet other replicas in this kopf peering object; only one of them works "
        "(default: TENANTDB_PEERING; unset: standalone)",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="this replica's peering priority; the highest live one works "
        "(default: TENANTDB_PRIORITY, else derived from POD_UID: distinct per pod)",
    )
    run.add_argument("--verbose", action="store_true", help="log every handler step")
    run.set_defaults(func=_run)

    crd = commands.add_parser("crds", help="write (or check) the CRDs generated from the models")
    crd.add_argument(
        "--out",
        type=Path,
        action="append",
        help="directory of the CRD files (repeat for each copy; default: crds)",
    )
    crd.add_argument(
        "--docs", type=Path, default=Path("docs/crd-reference.md"), help="reference page to write"
    )
    crd.add_argument(
        "--check", action="store_true", help="fail if the files differ from the models"
    )
    crd.set_defaults(func=_crds)

    dev = commands.add_parser("dev", help="local PostgreSQL + Kubernetes control plane + operator")
    dev_commands = dev.add_subparsers(title="dev commands")
    up = dev_commands.add_parser("up", help="start everything; Ctrl-C stops it")
    up.add_argument("--detach", action="store_true", help="start in the background and return")
    up.add_argument("--state", type=Path, default=Path(".dev"), help="state directory")
    up.add_argument("--apply", type=Path, action="append", default=[], help="manifest to apply")
    up.set_defaults(func=_dev_up)
    down = dev_commands.add_parser("down", help="stop what `dev up --detach` started")
    down.add_argument("--state", type=Path, default=Path(".dev"), help="state directory")
    down.set_defaults(func=_dev_down)
    tenants.register(commands)
    seeding.register(commands)
    migrations.register(commands)
    backups.register(commands)
    operations.register(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    from tenantdb.controllers import operator  # noqa: PLC0415 - kopf only when running

    peering = settings.PeeringSettings.from_environment(os.environ)
    peering = dataclasses.replace(
        peering,
        name=args.peering or peering.name,
        priority=peering.priority if args.priority is None else args.priority,
    )
    operator.run(
        namespaces=args.namespaces or watched_namespaces(os.environ.get("TENANTDB_NAMESPACE")),
        peering=peering,
        liveness_endpoint=args.liveness,
        log_format=args.log_format,
        verbose=args.verbose,
    )
    return 0


def watched_namespaces(listed: str | None) -> list[str]:
    """The namespaces a comma-separated ``TENANTDB_NAMESPACE`` names (none: all)."""
    return [name.strip() for name in (listed or "").split(",") if name.strip()]


def _crds(args: argparse.Namespace) -> int:
    directories = args.out or [Path("crds")]
    outputs = {
        directory / name: rendered
        for directory in directories
        for name, rendered in crds.files().items()
    }
    outputs[args.docs] = reference.render()
    # The CRD directories hold generated files only: one without a model is stale.
    orphans = [p for d in directories for p in sorted(d.glob("*.yaml")) if p not in outputs]
    stale = [str(path) for path in orphans] if args.check else []
    for path in orphans if not args.check else []:
        path.unlink()
    for path, rendered in outputs.items():
        if args.check:
            if not path.exists() or path.read_text() != rendered:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    if stale:
        print(
            "generated files differ from the models or have no model (run `make crds`): "
            + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


def _dev_up(args: argparse.Namespace) -> int:
    from tenantdb.devenv import stack  # noqa: PLC0415 - dev tooling only

    return stack.up(args.state.resolve(), detach=args.detach, apply=args.apply)


def _dev_down(args: argparse.Namespace) -> int:
    from tenantdb.devenv import stack  # noqa: PLC0415 - dev tooling only

    return stack.down(args.state.resolve())
