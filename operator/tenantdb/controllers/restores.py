"""``Tenant.spec.restoreFrom``: a new tenant's data from a Completed Backup.

The Tenant is provisioned as usual, but registered as *restoring*, so no
rollout reaches it; the restore runs as a job (``jobs``) and the Tenant's
reconcile waits for it (a temporary error, retried), then records
``status.restored`` and goes on: later Migrations apply on top, seeders the
archive's tenant already ran are not run again.
"""

import time
from dataclasses import dataclass
from typing import Any

import kopf

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import backups as backups_api
from tenantdb.api import tenants as api
from tenantdb.controllers import archives, backups, jobs, kube, logs, migrations, reporting, runtime
from tenantdb.core import commands, errors
from tenantdb.core.backups import manifest as manifest_
from tenantdb.core.backups import taking


class RestoreWaiting(errors.TenantDBError):
    """The restore cannot start yet (the Backup is not complete) or is running."""

    reason = conditions.Reason.RESTORING.value
    permanent = False


class RestoreRefused(errors.TenantDBError):
    """The Backup cannot seed this tenant: nothing was restored."""

    reason = conditions.Reason.RESTORE_FAILED.value


def ensure_restored(
    rt: runtime.Runtime,
    server: commands.Server,
    tenant: api.TenantSpec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    body: kopf.Body,
) -> None:
    """Return once the tenant's data is restored (at once if it asks for no restore)."""
    if tenant.restore_from is None or dict(status).get("restored"):
        return
    namespace, uid = meta["namespace"], meta["uid"]
    key = f"restore:{uid}"
    job = rt.jobs.get(key)
    if job is None:
        source = _source(rt, namespace, tenant)
        rt.jobs.submit(
            key, lambda: _restore(rt, server, source, uid, meta["name"]), group=namespace
        )
        message = f"restoring from Backup {tenant.restore_from.backup}"
        kopf.info(body, reason=conditions.Reason.RESTORING, message=message)
        _condition(patch, status, meta, "False", conditions.Reason.RESTORING, message)
        raise RestoreWaiting(message)
    if not job.done():
        raise RestoreWaiting(f"restoring from Backup {tenant.restore_from.backup}")
    rt.jobs.forget(key)
    try:
        restored: manifest_.Manifest = job.result()
    except errors.TenantDBError as exc:
        _condition(patch, status, meta, "False", conditions.Reason.RESTORE_FAILED, str(exc))
        raise
    record = api.Restored(
        backup=tenant.restore_from.backup,
        sha256=restored.sha256,
        schema_version=restored.schema_version,
        rows=restored.rows,
        completed_at=conditions.now(),
    )
    patch.status["restored"] = record.to_api()
    message = (
        f"restored {restored.rows} row(s) of {len(restored.tables)} table(s) from Backup "
        f"{record.backup} (migration version {restored.schema_version})"
    )
    _condition(patch, status, meta, "True", conditions.Reason.RESTORED, message)
    kopf.info(body, reason=conditions.Reason.RESTORED, message=message)


def _source(rt: runtime.Runtime, namespace: str, tenant: api.TenantSpec) -> "_Source":
    """The Backup to restore from, checked: complete, same mode, versions this namespace knows."""
    assert tenant.restore_from is not None
    name = tenant.restore_from.backup
    body = kube.read_custom_object(GROUP, VERSION, namespace, backups.PLURAL, name)
    if body is None:
        raise RestoreWaiting(f"Backup {name!r} does not exist in namespace {namespace} (yet)")
    job = backups.Job.of(rt, body)
    state = job.status
    phase = state.get("phase")
    if phase in (backups_api.Phase.FAILED, backups_api.Phase.EXPIRED):
        raise RestoreRefused(f"Backup {name!r} is {phase}: it holds no archive to restore")
    if phase != backups_api.Phase.COMPLETED:
        raise RestoreWaiting(f"Backup {name!r} is {phase or 'Pending'}; restoring once Completed")
    if state.get("isolation") != tenant.isolation.value:
        raise RestoreRefused(
            f"Backup {name!r} is of a {state.get('isolation')} tenant; this tenant's isolation "
            f"is {tenant.isolation.value}"
        )
    if job.spec is None:
        raise RestoreRefused(f"Backup {name!r} has a spec this operator cannot read")
    origin = taking.Origin(namespace, str(state.get("tenantUid")))
    keys = archives.keys(
        namespace, job.spec.encryption, job.spec.tenant, origin.tenant_uid, create=False
    )
    return _Source(name, namespace, job.destination(), keys, origin)


@dataclass(frozen=True)
class _Source:
    """A checked Backup: where its archive is and the key that opens it."""

    name: str
    namespace: str
    where: archives.Destination
    keys: archives.Keys | None
    origin: taking.Origin


def _restore(
    rt: runtime.Runtime, server: commands.Server, source: _Source, target_uid: str, target: str
) -> manifest_.Manifest:
    """The job: check the archive's versions against the namespace's Migrations, restore."""
    log = logs.about("Tenant", source.namespace, target, target_uid)
    log.info("restoring from Backup %s", source.name)
    started = time.monotonic()
    try:
        declared = migrations.declared_versions(source.namespace)
        restored = taking.restore(
            server,
            source.where.storage,
            source.where.location,
            source.keys.tenant_key if source.keys else None,
            target_uid,
            rt.settings.backups.tools_dir,
            known_versions=declared,
            progress=jobs.deadline(rt.settings.backups.timeout),
            origin=source.origin,
        )
    except Exception as exc:
        log.warning("restore from Backup %s failed: %s", source.name, exc)
        raise
    finally:
        reporting.RESTORE_SECONDS.observe(time.monotonic() - started)
    log.info("restored %d row(s) from Backup %s", restored.rows, source.name)
    return restored


def _condition(
    patch: kopf.Patch,
    status: kopf.Status,
    meta: kopf.Meta,
    value: conditions.ConditionStatus,
    reason: str,
    message: str,
) -> None:
    generation = int(meta.get("generation") or 0)
    reporting.write_condition(
        patch, status, generation, conditions.ConditionType.RESTORED, value, reason, message
    )


def restoring_from(tenant: api.TenantSpec, status: Any) -> str | None:
    """The Backup a tenant's registry row waits for (None once restored, or never asked)."""
    if tenant.restore_from is None or dict(status).get("restored"):
        return None
    return tenant.restore_from.backup
