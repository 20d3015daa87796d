"""Handlers of the ``Tenant`` kind: provision, converge, and delete by policy."""

from typing import Any

import kopf
import pydantic

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import tenants as api
from tenantdb.controllers import credentials, kube, reporting, runtime
from tenantdb.core import commands, connecting, errors, passwords

KIND = "Tenant"
PLURAL = "tenants"


class InvalidSpec(errors.TenantDBError):
    """The spec passed the CRD schema but not the operator's own checks."""

    reason = "InvalidSpec"


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
    **_: Any,
) -> None:
    """Converge the tenant's database objects and its credentials Secret."""
    rt = runtime.of(memo)
    generation = int(meta.get("generation") or 0)
    try:
        provisioned, created_secret = _provision(rt, spec, meta, body)
    except (errors.TenantDBError, credentials.SecretConflict, kube.ApiError) as exc:
        failed_phase = api.Phase.FAILED if getattr(exc, "permanent", True) else api.Phase.PENDING
        reporting.fail(
            KIND,
            _retryable(exc),
            body,
            patch,
            status,
            generation,
            failed_phase,
            rt.settings.watch.retry_delay,
            logger,
        )
    suspended = bool(spec.get("suspended"))
    _write_ready_status(patch, status, generation, provisioned, meta["name"], suspended)
    if created_secret or dict(status).get("observedGeneration") != generation:
        message = f"schema {provisioned.schema} and role {provisioned.names.login_role} are ready"
        kopf.info(body, reason=conditions.Reason.PROVISIONED, message=message)
    reporting.RECONCILES.labels(kind=KIND, outcome="ready").inc()


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(
    spec: kopf.Spec, meta: kopf.Meta, body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    """Carry out the deletion policy before the finalizer is released."""
    rt = runtime.of(memo)
    policy = _parse(spec).deletion_policy
    if policy is api.DeletionPolicy.BACKUP_THEN_DELETE:
        message = (
            "BackupThenDelete needs the Backup controller; set deletionPolicy to Retain or Delete"
        )
        kopf.warn(body, reason=conditions.Reason.DELETION_BLOCKED, message=message)
        raise kopf.TemporaryError(message, delay=60)
    try:
        commands.deprovision(
            rt.pool,
            rt.control_schema,
            uid=meta["uid"],
            name=meta["name"],
            drop=policy is api.DeletionPolicy.DELETE,
        )
    except errors.TenantDBError as exc:
        kopf.warn(body, reason=conditions.Reason.DELETION_BLOCKED, message=str(exc))
        raise kopf.TemporaryError(str(exc), delay=rt.settings.watch.retry_delay) from exc
    logger.info("tenant deleted with policy %s", policy.value)


def _provision(
    rt: runtime.Runtime, spec: Any, meta: Any, body: Any
) -> tuple[commands.Provisioned, bool]:
    """Provision in PostgreSQL, then write the Secret (so a refusal leaves no Secret)."""
    tenant = _parse(spec)
    limits = rt.settings.plans.get(tenant.plan)
    if limits is None:
        known = ", ".join(sorted(rt.settings.plans))
        raise errors.UnknownPlan(f"plan {tenant.plan!r} is not configured (known: {known})")
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    stored = credentials.existing_password(namespace, name, uid)
    password = stored or passwords.generate()
    request = commands.TenantRequest(
        uid=uid,
        name=name,
        namespace=namespace,
        isolation=tenant.isolation,
        plan=tenant.plan,
        limits=limits,
        display_name=tenant.display_name,
        domain=tenant.domain,
        suspended=tenant.suspended,
        metadata=tenant.metadata,
    )
    provisioned = commands.provision(
        rt.pool, rt.control_schema, request, password=password, reset_password=stored is None
    )
    if stored is None:
        endpoint = connecting.public_parameters(
            rt.settings.database.url, rt.settings.database.public_host
        )
        creds = credentials.Credentials(
            host=endpoint["host"],
            port=endpoint["port"],
            database=provisioned.database,
            username=provisioned.names.login_role,
            password=password,
        )
        credentials.write(namespace, name, dict(kopf.build_owner_reference(body)), creds)
    return provisioned, stored is None


def _parse(spec: Any) -> api.TenantSpec:
    try:
        return api.TenantSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        raise InvalidSpec(f"invalid spec: {exc.errors(include_url=False)}") from exc


def _retryable(exc: Exception) -> Exception:
    """API errors while writing the Secret are transient; say so."""
    if isinstance(exc, kube.ApiError) and kube.is_conflict_or_unavailable(exc):
        return errors.DatabaseUnavailable(f"Kubernetes API: {exc.reason}")
    return exc


def _write_ready_status(
    patch: Any,
    status: Any,
    generation: int,
    provisioned: commands.Provisioned,
    name: str,
    suspended: bool,
) -> None:
    patch.status["phase"] = api.Phase.SUSPENDED if suspended else api.Phase.READY
    patch.status["schema"] = provisioned.schema
    patch.status["database"] = provisioned.database
    patch.status["role"] = provisioned.names.login_role
    patch.status["ownerRole"] = provisioned.names.owner_role
    patch.status["credentialsSecret"] = credentials.secret_name(name)
    reason = conditions.Reason.SUSPENDED if suspended else conditions.Reason.PROVISIONED
    message = "login disabled; data kept" if suspended else "tenant is provisioned"
    reporting.write_condition(
        patch, status, generation, conditions.ConditionType.READY, "True", reason, message
    )
