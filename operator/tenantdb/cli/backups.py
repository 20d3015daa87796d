"""``tenantdb backup``: take, list, verify and restore archives straight from PostgreSQL.

The same engine the operator runs (``core.backups.taking``), for a shell
without the operator: disaster recovery, a one-off copy, a scheduled job
of your own. Archives are plain here (the operator's encrypted archives
need their tenant's key, which lives in a Kubernetes Secret: restore those
through a Tenant's ``restoreFrom``). Storage is a URL: ``file:///dir`` or
``s3://bucket/prefix`` with ``TENANTDB_BACKUP_S3_*`` and the usual
``AWS_*`` credentials.
"""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tenantdb.cli import terminal

if TYPE_CHECKING:
    from tenantdb.core import commands
    from tenantdb.core.backups import manifest, storage, taking


def human_size(size: int) -> str:
    """Bytes for humans (the manifest's own rendering, imported on demand)."""
    from tenantdb.core.backups import manifest  # noqa: PLC0415

    return manifest.human_size(size)


HEADER = ["LOCATION", "TENANT", "ISOLATION", "VERSION", "TABLES", "ROWS", "SIZE", "TAKEN"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backup create | list | verify | restore`` to the ``tenantdb`` command."""
    backup = commands.add_parser("backup", help="archives of one tenant, without the operator")
    backup.set_defaults(func=lambda _: terminal.usage(backup))
    sub = backup.add_subparsers(title="backup commands")

    create = sub.add_parser("create", help="dump one tenant into a new archive")
    _tenant_arguments(create)
    create.add_argument("--compression", choices=["zstd", "gzip", "none"], default="zstd")
    create.set_defaults(func=_create)

    listing = sub.add_parser("list", help="the archives in a storage")
    _storage_argument(listing)
    listing.add_argument("--namespace", help="only this namespace")
    listing.add_argument("--tenant", help="only this tenant (with --namespace)")
    listing.set_defaults(func=_list)

    verify = sub.add_parser("verify", help="restore an archive into a scratch copy and compare")
    _storage_argument(verify)
    verify.add_argument("location", help="the archive's location, as `backup list` shows it")
    verify.set_defaults(func=_verify)

    restore = sub.add_parser(
        "restore", help="load an archive into a provisioned, empty tenant of the same mode"
    )
    _storage_argument(restore)
    restore.add_argument("location", help="the archive's location, as `backup list` shows it")
    restore.add_argument("--namespace", required=True, help="the target tenant's namespace")
    restore.add_argument("--tenant", required=True, help="the target tenant (already provisioned)")
    restore.set_defaults(func=_restore)


def _storage_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        default=terminal.settings().backups.storage,
        required=terminal.settings().backups.storage is None,
        help="file:///dir or s3://bucket/prefix (default: TENANTDB_BACKUP_STORAGE)",
    )


def _tenant_arguments(parser: argparse.ArgumentParser) -> None:
    _storage_argument(parser)
    parser.add_argument("--namespace", required=True, help="the tenant's namespace")
    parser.add_argument("--tenant", required=True, help="the tenant's name")


def _create(args: argparse.Namespace) -> int:
    import tenantdb  # noqa: PLC0415
    from tenantdb.core.backups import storage as storage_  # noqa: PLC0415
    from tenantdb.core.backups import taking  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server(max_connections=4) as server:
        uid = _uid(server, args.namespace, args.tenant)
        location = storage_.archive_location(
            args.namespace, args.tenant, datetime.now(UTC), f"cli-{secrets.token_hex(6)}"
        )
        bar = terminal.Bar(f"backup {args.namespace}/{args.tenant}")
        options = taking.Options(
            compression=args.compression,
            tools_dir=terminal.settings().backups.tools_dir,
            tool_version=tenantdb.__version__,
            progress=lambda done: bar.draw(0.0, f"{human_size(done)} dumped"),
        )
        made = taking.take(server, uid, _storage(args.storage), location, options)
        bar.close()
        print(
            f"{location}: {len(made.tables)} table(s), {made.rows} row(s), "
            f"{human_size(made.size_bytes)}, sha256 {made.sha256}"
        )
        return 0
    return 1


def _list(args: argparse.Namespace) -> int:
    from tenantdb.core.backups import archive, manifest  # noqa: PLC0415
    from tenantdb.core.backups import storage as storage_  # noqa: PLC0415

    with terminal.failures_reported():
        store = _storage(args.storage)
        prefix = ""
        if args.namespace:
            prefix = args.namespace
            if args.tenant:
                prefix = storage_.tenant_location(args.namespace, args.tenant)
        found: list[tuple[str, manifest.Manifest]] = []
        for key in store.keys(prefix):
            if key.endswith(f"/{archive.MANIFEST}"):
                location = key.removesuffix(f"/{archive.MANIFEST}")
                with store.reader(key) as source:
                    found.append((location, manifest.Manifest.from_json(source.read(1 << 24))))
        rows = [
            [
                location,
                f"{m.namespace}/{m.tenant}",
                m.isolation,
                str(m.schema_version or "-"),
                str(len(m.tables)),
                str(m.rows),
                human_size(m.size_bytes),
                m.completed_at,
            ]
            for location, m in sorted(found, key=lambda item: item[1].completed_at)
        ]
        terminal.table(HEADER, rows, [""] * len(rows), empty="no archives")
        return 0
    return 1


def _verify(args: argparse.Namespace) -> int:
    from tenantdb.core.backups import archive, taking  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server(max_connections=4) as server:
        store = _storage(args.storage)
        found = archive.ArchiveReader(store, args.location).manifest()
        total = found.payload_bytes
        bar = terminal.Bar(f"verify {args.location}")
        result = taking.verify(
            server,
            store,
            args.location,
            None,
            terminal.settings().backups.tools_dir,
            _origin(args.location, found),
            progress=lambda done: bar.draw(done / max(total, 1), human_size(done)),
        )
        bar.close()
        for mismatch in result.mismatches:
            print(f"mismatch: {mismatch}")
        print(f"{len(result.tables)} table(s) compared: {'ok' if result.ok else 'MISMATCH'}")
        return 0 if result.ok else 1
    return 1


def _restore(args: argparse.Namespace) -> int:
    from tenantdb.core.backups import archive, taking  # noqa: PLC0415

    with terminal.failures_reported(), terminal.server(max_connections=4) as server:
        store = _storage(args.storage)
        checked = archive.ArchiveReader(store, args.location).manifest()
        origin = _origin(args.location, checked)
        if origin.namespace != args.namespace:
            raise SystemExit(
                f"the archive is of namespace {origin.namespace}: restore it into a tenant there"
            )
        uid = _uid(server, args.namespace, args.tenant)
        bar = terminal.Bar(f"restore into {args.namespace}/{args.tenant}")
        known = {m.version: m.scope for m in checked.migrations}
        restored = taking.restore(
            server,
            store,
            args.location,
            None,
            uid,
            terminal.settings().backups.tools_dir,
            known_versions=known,
            origin=origin,
            progress=lambda done: bar.draw(done / max(checked.payload_bytes, 1), human_size(done)),
        )
        bar.close()
        print(f"restored {restored.rows} row(s) of {len(restored.tables)} table(s)")
        return 0
    return 1


def _origin(location: str, found: manifest.Manifest) -> taking.Origin:
    """Whose archive a location holds: the namespace its path begins with (as every
    archive's does) and the tenant its manifest names."""
    from tenantdb.core.backups import taking  # noqa: PLC0415

    return taking.Origin(namespace=location.split("/", 1)[0], tenant_uid=found.tenant_uid)


def _uid(server: commands.Server, namespace: str, name: str) -> str:
    from tenantdb.core import commands  # noqa: PLC0415

    for record, retained in commands.list_tenants(server, namespace):
        if record.name == name and not retained:
            return record.uid
    raise SystemExit(f"no live tenant {namespace}/{name} is registered")


def _storage(url: str) -> storage.Storage:
    """The storage a URL names, with the S3 settings of the environment."""
    from tenantdb.core.backups import urls  # noqa: PLC0415

    try:
        return urls.open_url(url, terminal.settings().backups)
    except ValueError as exc:
        raise SystemExit(f"--storage {exc}") from exc
