"""Handlers of the ``Tenant`` kind: provision, converge, delete by policy.

Isolation is verified periodically by ``verification``, one loop for every tenant.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import pydantic

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import tenants as api
from tenantdb.controllers import (
    credentials,
    directory,
    final_backups,
    kube,
    migrations,
    reporting,
    requeue,
    restores,
    runtime,
)
from tenantdb.core import commands, errors, naming, placement, seeding

KIND = "Tenant"
PLURAL = "tenants"
ROTATE_ANNOTATION = f"{GROUP}/rotate-credentials"
WAIT_DELAY = 2.0
"""Seconds between two looks at a restore or a final backup in flight."""


class InvalidSpec(errors.TenantDBError):
    """The spec passed the CRD schema but not the operator's own checks."""

    reason = "InvalidSpec"


@dataclass(frozen=True)
class Outcome:
    """What one reconciliation did, for status and events."""

    provisioned: commands.Provisioned
    secret_written: bool
    rotated: str | None


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Converge the tenant's database objects and its credentials Secret.

    The status patch keeps only what changed, so a reconcile that changes
    nothing writes nothing of its own (kopf's diff base, when the spec or
    metadata moved, is then its one write). One that must wait (a retryable
    failure, a server not reached yet, a restore) returns with its status
    saying why and comes back through ``requeue``, not kopf's in-worker retry.
    """
    waits = requeue.of(memo)
    with reporting.RECONCILE_SECONDS.labels(kind=KIND).time():
        try:
            _reconcile(spec, meta, status, body, patch, memo, logger)
        except kopf.TemporaryError as exc:
            ref = requeue.Ref(meta["namespace"], PLURAL, meta["name"], meta["uid"])
            seconds = waits.later(ref, float(exc.delay or 0) or runtime.STARTING_DELAY)
            logger.info("waiting: %s; reconciling again in %.0fs", exc, seconds)
        else:
            waits.forget(meta["uid"])
        finally:
            reporting.drop_unchanged(patch, status)


def _reconcile(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    logger: kopf.Logger,
) -> None:
    rt = runtime.of(memo)
    generation = int(meta.get("generation") or 0)
    try:
        tenant = parse_spec(spec)
        member = _placed(rt, tenant, meta, directory.declared())
        patch.status["server"] = member.name
        outcome = _converge(rt, member, tenant, meta, status, body)
        _write_location(patch, outcome, meta, tenant)
        restores.ensure_restored(rt, member.server, tenant, meta, status, patch, body)
        version = migrations.catch_up(
            rt,
            member.server,
            meta["namespace"],
            meta["uid"],
            dict(meta.get("labels") or {}),
            logger,
            known=migrations.VERSIONS.get(meta["namespace"]),
            shared=tenant.isolation is api.Isolation.SHARED,
        )
        seeded = _seed(rt, member.server, tenant, meta["uid"], patch, status, generation, body)
    except directory.ServerConnecting as exc:
        raise kopf.TemporaryError(str(exc), delay=runtime.STARTING_DELAY) from exc
    except restores.RestoreWaiting as exc:
        _wait(patch, status, generation, exc, min(rt.settings.watch.retry_delay, WAIT_DELAY))
    except (errors.TenantDBError, credentials.SecretConflict, kube.ApiError) as exc:
        problem = _retryable(exc)
        phase = api.Phase.FAILED if getattr(problem, "permanent", True) else api.Phase.PENDING
        reporting.fail(
            KIND,
            problem,
            body,
            patch,
            status,
            generation,
            phase,
            rt.settings.watch.retry_delay,
            logger,
        )
    _write_ready(patch, status, generation, tenant)
    patch.status["version"] = version
    if seeded is not None:
        patch.status["seeded"] = seeded
    if outcome.rotated is not None:
        kopf.info(
            body, reason=conditions.Reason.CREDENTIALS_ROTATED, message="new password in Secret"
        )
    if outcome.secret_written or dict(status).get("observedGeneration") != generation:
        where = f"{outcome.provisioned.database}/{outcome.provisioned.schema}"
        message = f"{tenant.isolation.value} tenant ready in {where} as role {outcome.provisioned.names.login_role}"
        kopf.info(body, reason=conditions.Reason.PROVISIONED, message=message)
    reporting.RECONCILES.labels(kind=KIND, outcome="ready").inc()


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Carry out the deletion policy before the finalizer is released."""
    rt = runtime.of(memo)
    policy, note = deletion_policy(spec)
    if note:
        kopf.warn(body, reason=conditions.Reason.RETAINED, message=note)
        logger.warning("%s", note)
    try:
        if policy is api.DeletionPolicy.BACKUP_THEN_DELETE:
            patch.status["phase"] = api.Phase.DELETING
            final = final_backups.ensure_backed_up(rt, meta, status, patch, body)
            logger.info("final Backup %s is Completed; deleting the data", final)
        drop = policy is not api.DeletionPolicy.RETAIN
        server = rt.servers.server(rt.servers.located(meta["uid"]))
        commands.deprovision(server, uid=meta["uid"], name=meta["name"], drop=drop)
        rt.servers.forget(meta["uid"])
    except final_backups.FinalBackupPending as exc:
        delay = min(rt.settings.watch.retry_delay, WAIT_DELAY)
        raise kopf.TemporaryError(str(exc), delay=delay) from exc
    except (errors.TenantDBError, kube.ApiError) as exc:
        kopf.warn(body, reason=conditions.Reason.DELETION_BLOCKED, message=str(exc))
        raise kopf.TemporaryError(str(exc), delay=rt.settings.watch.retry_delay) from exc
    logger.info("tenant deleted with policy %s", policy.value)


def deletion_policy(spec: Any) -> tuple[api.DeletionPolicy, str]:
    """The policy deleting carries out, and why it is not the one asked for (if so).

    Deleting never waits for something that cannot happen: a spec it cannot
    read keeps the data, as ``Retain`` does.
    """
    try:
        policy = parse_spec(spec).deletion_policy
    except InvalidSpec as exc:
        return api.DeletionPolicy.RETAIN, f"data retained: the spec cannot be read ({exc})"
    return policy, ""


def _placed(
    rt: runtime.Runtime, tenant: api.TenantSpec, meta: kopf.Meta, declared: frozenset[str]
) -> directory.Member:
    """The tenant's server by the directory (status only mirrors it), placing it first if
    new: by ``serverRef``, by ``serverSelector``, or on the operator's own server."""
    placing = placement.Tenant(
        meta["uid"], meta["namespace"], meta["name"], tenant.isolation.value, tenant.domain
    )
    ref, selector = tenant.server_ref, tenant.server_selector
    if ref is None and selector is None:
        return rt.servers.member(rt.servers.place_on_default(placing), declared)
    found = rt.servers.located(meta["uid"])
    if found is not None:
        rt.servers.claim_domain(placing)
        return rt.servers.member(found, declared)
    if ref is not None:
        candidates, why = [rt.servers.member(ref.name, declared).candidate()], f"server {ref.name}"
    else:
        assert selector is not None  # one of the two, or the first test returned
        candidates = rt.servers.candidates(selector)
        why = "the Ready, schedulable servers matching serverSelector"
    return rt.servers.place(placing, candidates, why)


def _converge(
    rt: runtime.Runtime,
    member: directory.Member,
    tenant: api.TenantSpec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
) -> Outcome:
    """Store the password in the Secret and provision with it, then complete the Secret.

    ``core`` asks for the password after registering the tenant, so a refusal
    (a domain taken) still leaves no Secret."""
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    member.require(tenant.isolation.value)
    request = request_for(rt, tenant, meta)
    rotation = dict(meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
    rotate = rotation is not None and rotation != dict(status).get("credentialsRotation")
    owner = dict(kopf.build_owner_reference(body))
    endpoint = member.endpoint
    complete = _predicted(tenant, naming.tenant_names(name, uid), endpoint)
    fresh = not dict(status).get("credentialsSecret")
    stored = credentials.StoredPassword(
        namespace, name, owner, rotate=rotate, fresh=fresh, complete=complete
    )
    provisioned = commands.provision(member.server, request, stored, reset_password=True)
    creds = credentials.Credentials(
        host=endpoint["host"],
        port=endpoint["port"],
        database=provisioned.database,
        username=provisioned.names.login_role,
        password=stored.data["password"],
        tenant_id=uid if tenant.isolation is api.Isolation.SHARED else None,
        tenant_token=provisioned.token,
    )
    rewrite = credentials.write(stored, creds)
    rotate = rotate and stored.written
    return Outcome(provisioned, secret_written=rewrite, rotated=rotation if rotate else None)


def _predicted(
    tenant: api.TenantSpec, names: naming.TenantNames, endpoint: Mapping[str, str]
) -> Callable[[str], dict[str, str]] | None:
    """The Secret's keys before provisioning, for every mode but ``shared`` (whose
    token provisioning computes). A wrong guess costs only the second write."""
    if tenant.isolation is api.Isolation.SHARED:
        return None
    database = names.database if tenant.isolation is api.Isolation.DATABASE else endpoint["dbname"]

    def data(password: str) -> dict[str, str]:
        return credentials.Credentials(
            host=endpoint["host"],
            port=endpoint["port"],
            database=database,
            username=names.login_role,
            password=password,
        ).as_data()

    return data


def _seed(
    rt: runtime.Runtime,
    server: commands.Server,
    tenant: api.TenantSpec,
    uid: str,
    patch: kopf.Patch,
    status: kopf.Status,
    generation: int,
    body: kopf.Body,
) -> bool | None:
    """Run the requested seeders (after migrations, before Ready); None if none asked."""
    if tenant.seed is None:
        return None
    settings = rt.settings
    try:
        report = seeding.seed_tenant(
            server.pool,
            server.control_schema,
            server.shared_schema,
            server.sessions,
            uid,
            tenant.seed.profile.value,
            tenant.seed.seeders,
            settings.environment.value,
            settings.seeders_dir,
            applied_by=settings.instance,
        )
    except errors.TenantDBError as exc:
        reporting.write_condition(
            patch,
            status,
            generation,
            conditions.ConditionType.SEEDED,
            "False",
            exc.reason,
            str(exc),
        )
        raise
    if report.applied:
        message = f"applied {', '.join(report.applied)}"
        kopf.info(body, reason=conditions.Reason.SEEDED, message=message)
    else:
        message = "every requested seeder is at its version"
    reporting.write_condition(
        patch,
        status,
        generation,
        conditions.ConditionType.SEEDED,
        "True",
        conditions.Reason.SEEDED,
        message,
    )
    return True


def request_for(
    rt: runtime.Runtime, tenant: api.TenantSpec, meta: Mapping[str, Any]
) -> commands.TenantRequest:
    """What ``core`` provisions (or repairs) for this Tenant, with its plan's limits."""
    limits = rt.settings.plans.get(tenant.plan)
    if limits is None:
        known = ", ".join(sorted(rt.settings.plans))
        raise errors.UnknownPlan(f"plan {tenant.plan!r} is not configured (known: {known})")
    return commands.TenantRequest(
        uid=meta["uid"],
        name=meta["name"],
        namespace=meta["namespace"],
        isolation=tenant.isolation,
        plan=tenant.plan,
        limits=limits,
        display_name=tenant.display_name,
        domain=tenant.domain,
        suspended=tenant.suspended,
        metadata=dict(tenant.metadata),
        restoring_from=tenant.restore_from.backup if tenant.restore_from else None,
    )


def parse_spec(spec: Mapping[str, Any]) -> api.TenantSpec:
    """The spec as the operator reads it; ``InvalidSpec`` if it cannot."""
    try:
        return api.TenantSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        raise InvalidSpec(f"invalid spec: {exc.errors(include_url=False)}") from exc


def _wait(
    patch: kopf.Patch,
    status: kopf.Status,
    generation: int,
    exc: restores.RestoreWaiting,
    delay: float,
) -> None:
    """Not Ready while the restore runs; no Warning event for a wait."""
    reporting.write_ready(
        patch, status, generation, api.Phase.PROVISIONING, "False", exc.reason, str(exc)
    )
    raise kopf.TemporaryError(str(exc), delay=delay) from exc


def _retryable(exc: Exception) -> Exception:
    """API errors while writing the Secret are transient; say so."""
    if isinstance(exc, kube.ApiError) and kube.is_conflict_or_unavailable(exc):
        return errors.DatabaseUnavailable(f"Kubernetes API: {exc.reason}")
    return exc


def _write_location(
    patch: kopf.Patch, outcome: Outcome, meta: kopf.Meta, tenant: api.TenantSpec
) -> None:
    """Where the tenant lives, written once provisioned (even if catching up then waits)."""
    provisioned = outcome.provisioned
    patch.status["schema"] = provisioned.schema
    patch.status["database"] = provisioned.database
    patch.status["role"] = provisioned.names.login_role
    patch.status["ownerRole"] = provisioned.owner_role
    patch.status["credentialsSecret"] = credentials.secret_name(meta["name"])
    if tenant.isolation is api.Isolation.SHARED:
        patch.status["tenantId"] = meta["uid"]
    if outcome.rotated is not None:
        patch.status["credentialsRotation"] = outcome.rotated


def _write_ready(
    patch: kopf.Patch, status: kopf.Status, generation: int, tenant: api.TenantSpec
) -> None:
    phase = api.Phase.SUSPENDED if tenant.suspended else api.Phase.READY
    reason = conditions.Reason.SUSPENDED if tenant.suspended else conditions.Reason.PROVISIONED
    message = "login disabled; data kept" if tenant.suspended else "tenant is provisioned"
    reporting.write_ready(patch, status, generation, phase, "True", reason, message)


def write_isolation(
    patch: kopf.Patch,
    status: Mapping[str, Any],
    generation: int,
    value: conditions.ConditionStatus,
    reason: str,
    message: str,
) -> None:
    """Set ``IsolationVerified`` in the patch, unless it already says exactly this."""
    current = reporting.current_conditions(status)
    same = any(
        c.type == conditions.ConditionType.ISOLATION_VERIFIED
        and c.status == value
        and c.message == message
        for c in current
    )
    if not same:
        reporting.write_condition(
            patch,
            status,
            generation,
            conditions.ConditionType.ISOLATION_VERIFIED,
            value,
            reason,
            message,
        )
