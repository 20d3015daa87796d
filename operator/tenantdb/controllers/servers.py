"""Handlers of the ``DatabaseServer`` kind: reach a server, prepare it, report it.

A server joins the directory once the operator has reached it as the role its
Secret names, checked that role's privileges and prepared its control schema;
until then its tenants wait (``ServerUnavailable``). A timer keeps its status
current. Deleting a server that still hosts tenants is refused by the
finalizer, with how many remain.
"""

import dataclasses
import hashlib
import logging
from typing import Any

import kopf
import pydantic

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import servers as api
from tenantdb.controllers import directory, kube, reporting, runtime
from tenantdb.core import commands, connecting, errors

_LOG = logging.getLogger("tenantdb.servers")
KIND = "DatabaseServer"
PLURAL = "databaseservers"
CHECK_INTERVAL = 30.0
"""Seconds between two looks at a connected server (reachability, tenants placed)."""
REACH_TIMEOUT = 10
ISOLATIONS = ("schema", "database", "shared")


class ServerRefused(errors.TenantDBError):
    """The server's spec, Secret or role cannot serve tenants."""

    reason = "InvalidServer"
    permanent = False


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def connect(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Open (or reopen) the server's connections, prepare it and say so in status."""
    rt = runtime.of(memo)
    generation = int(meta.get("generation") or 0)
    try:
        member = _joined(rt, meta, spec)
        _report(rt, member, patch, status, generation)
    except (errors.TenantDBError, kube.ApiError) as exc:
        rt.servers.tried(str(meta["name"]))
        reporting.SERVER_REACHABLE.labels(server=meta["name"]).set(0)
        patch.status["reachable"] = False
        reporting.fail(
            KIND,
            exc,
            body,
            patch,
            status,
            generation,
            api.Phase.UNREACHABLE,
            rt.settings.watch.retry_delay,
            logger,
        )
    finally:
        reporting.drop_unchanged(patch, status)
    if dict(status).get("phase") != api.Phase.READY:
        kopf.info(body, reason=conditions.Reason.CONNECTED, message="server reached and prepared")


@kopf.timer(GROUP, VERSION, PLURAL, interval=CHECK_INTERVAL, initial_delay=CHECK_INTERVAL)
def check(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: Any,
    **_: Any,
) -> None:
    """Reachability and tenants placed, rewritten only when they change; a changed Secret
    (a rotated password) reopens the server's connections."""
    rt = runtime.current(memo)
    if rt is None:
        return
    generation = int(meta.get("generation") or 0)
    try:
        member = _joined(rt, meta, spec)
        connecting.ping(member.server.pool, REACH_TIMEOUT)
        _report(rt, member, patch, status, generation)
    except (errors.TenantDBError, kube.ApiError) as exc:
        reporting.SERVER_REACHABLE.labels(server=meta["name"]).set(0)
        patch.status["reachable"] = False
        reason = str(getattr(exc, "reason", "Error"))
        reporting.write_ready(
            patch, status, generation, api.Phase.UNREACHABLE, "False", reason, str(exc)
        )
    reporting.drop_unchanged(patch, status)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def remove(
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    **_: Any,
) -> None:
    """Refuse while tenants live on the server; then close its connections."""
    rt = runtime.of(memo)
    name = str(meta["name"])
    count, first = rt.servers.hosted(name)
    if count:
        more = ", ..." if count > len(first) else ""
        message = (
            f"{count} tenant(s) still live on this server ({', '.join(first)}{more}): "
            "delete them first; the server is kept until then"
        )
        generation = int(meta.get("generation") or 0)
        reporting.write_ready(
            patch, status, generation, api.Phase.DELETING, "False", "TenantsRemain", message
        )
        kopf.warn(body, reason="TenantsRemain", message=message)
        raise kopf.TemporaryError(message, delay=rt.settings.watch.retry_delay)
    rt.servers.leave(name)
    reporting.SERVER_REACHABLE.remove(name)
    for isolation in ISOLATIONS:
        reporting.SERVER_TENANTS.remove(name, isolation)


def _joined(rt: runtime.Runtime, meta: kopf.Meta, spec: kopf.Spec) -> directory.Member:
    """The server's member of the directory, opened, checked and prepared if new or changed."""
    name = str(meta["name"])
    try:
        parsed = api.DatabaseServerSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        raise ServerRefused(f"invalid spec: {exc}") from exc
    url = _url(rt, parsed.connection)
    fingerprint = hashlib.sha256(f"{url}\0{parsed.connection.public_host}".encode()).hexdigest()
    labels = dict(meta.get("labels") or {})
    try:
        known: directory.Member | None = rt.servers.member(name)
    except directory.ServerUnavailable:
        known = None
    if known is not None and known.fingerprint == fingerprint:
        member = dataclasses.replace(
            known, labels=labels, capacity=parsed.capacity, unschedulable=parsed.unschedulable
        )
    else:
        member = _opened(rt, name, parsed, url, labels, fingerprint)
    rt.servers.join(member)
    rt.servers.tried(name)
    return member


def _opened(
    rt: runtime.Runtime,
    name: str,
    parsed: api.DatabaseServerSpec,
    url: str,
    labels: dict[str, str],
    fingerprint: str,
) -> directory.Member:
    database = rt.settings.database.with_url(url)
    server = commands.open_server(database, f"tenantdb-{name}")
    try:
        connecting.reach(server.url, REACH_TIMEOUT)
        privileges = commands.inspect_privileges(server)
        for line in privileges.missing():
            _LOG.warning("server %s: the operator's role %s lacks %s", name, privileges.role, line)
        runtime.refuse_unusable(privileges)
        commands.prepare(server)
    except Exception:
        server.close()
        raise
    endpoint = connecting.public_parameters(url, parsed.connection.public_host)
    return directory.Member(
        name,
        server,
        endpoint,
        labels,
        parsed.capacity,
        parsed.unschedulable,
        fingerprint,
        privileges,
    )


def _url(rt: runtime.Runtime, connection: api.Connection) -> str:
    namespace = rt.settings.watch.own_namespace
    secret = kube.read_secret(namespace, connection.secret_name)
    if secret is None:
        raise ServerRefused(f"Secret {namespace}/{connection.secret_name} not found")
    url = (secret.get("data") or {}).get(connection.key)
    if not url:
        raise ServerRefused(
            f"Secret {namespace}/{connection.secret_name} has no key {connection.key}"
        )
    if not connecting.valid_url(str(url)):
        raise ServerRefused(
            f"Secret {namespace}/{connection.secret_name} key {connection.key} is not a"
            " libpq URL (postgresql://user:password@host:port/database, percent-encoded)"
        )
    return str(url)


def _report(
    rt: runtime.Runtime,
    member: directory.Member,
    patch: kopf.Patch,
    status: kopf.Status,
    generation: int,
) -> None:
    by_mode = rt.servers.placed(member.name)
    reporting.SERVER_REACHABLE.labels(server=member.name).set(1)
    for isolation in ISOLATIONS:
        count = by_mode.get(isolation, 0)
        reporting.SERVER_TENANTS.labels(server=member.name, isolation=isolation).set(count)
    patch.status["reachable"] = True
    if member.privileges is not None:
        patch.status["serverVersion"] = _version(member.privileges.server_version)
    patch.status["tenants"] = api.PlacedTenants.model_validate(
        {"total": sum(by_mode.values()), **by_mode}
    ).to_api()
    reporting.write_ready(
        patch,
        status,
        generation,
        api.Phase.READY,
        "True",
        conditions.Reason.CONNECTED,
        f"reached as {member.privileges.role if member.privileges else 'its role'}; "
        f"{sum(by_mode.values())} tenant(s) placed",
    )


def _version(number: int) -> str:
    """``server_version_num`` (170004) as PostgreSQL prints it (17.4)."""
    return f"{number // 10000}.{number % 10000}"
