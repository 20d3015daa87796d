"""Day-2 requests on a Tenant, made with annotations: validate, and reset.

``tenantdb.io/validate: <any value>``: validate the tenant once per new value
and record the result in ``status.validation`` (``core.validation``; nothing
is changed). ``tenantdb.io/reset: <the tenant's name>[/<request id>]``: empty its data
(``core.resetting``), once per new value (a GitOps tool applying the same value
again resets nothing; a new request id asks again); in production the operator first
takes a Backup and waits until it is Completed (``final_backups.advance``,
as ``BackupThenDelete`` does), then resets and runs the tenant's seeders again.
A value other than the tenant's name is refused with the reason, in
``status.reset``. A busy tenant (migration, seeding, backup) is retried until
it is free; an unreachable server is reported and retried.
"""

from typing import Any

import kopf

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import tenants as api
from tenantdb.controllers import directory, final_backups, migrations, runtime
from tenantdb.core import errors, resetting, validation
from tenantdb.settings import Environment

PLURAL = "tenants"
VALIDATE_ANNOTATION = f"{GROUP}/validate"
RESET_ANNOTATION = f"{GROUP}/reset"
BACKUP_WAIT = 2.0
"""Seconds between two looks at the Backup a reset waits for."""


def _requested(meta: kopf.Meta, status: kopf.Status, field: str, annotation: str) -> str | None:
    """The annotation's value while what it asks for is not finished (a new value, or one
    still waiting for a backup or a busy tenant: no ``completedAt`` yet)."""
    value = dict(meta.get("annotations") or {}).get(annotation)
    recorded = dict(status).get(field) or {}
    if value is None or (recorded.get("request") == value and recorded.get("completedAt")):
        return None
    return str(value)


@kopf.on.resume(
    GROUP, VERSION, PLURAL, id="validate", annotations={VALIDATE_ANNOTATION: kopf.PRESENT}
)
@kopf.on.create(
    GROUP, VERSION, PLURAL, id="validate", annotations={VALIDATE_ANNOTATION: kopf.PRESENT}
)
@kopf.on.update(
    GROUP, VERSION, PLURAL, id="validate", annotations={VALIDATE_ANNOTATION: kopf.PRESENT}
)
def validate(
    meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """Validate once per annotation value; the result goes to ``status.validation``."""
    request = _requested(meta, status, "validation", VALIDATE_ANNOTATION)
    if request is None:
        return
    rt = runtime.of(memo)
    try:
        report = validation.validate(
            rt.servers.server(directory.located(status)),
            meta["uid"],
            migrations.known_scripts(meta["namespace"]),
        )
    except errors.TenantDBError as exc:
        result = api.ValidationResult(request=request, message=f"{exc.reason}: {exc}")
        if not exc.permanent:  # busy, or the server is unreachable: say so, try again
            patch.status["validation"] = result.to_api()
            raise kopf.TemporaryError(str(exc), delay=rt.settings.watch.retry_delay) from exc
        patch.status["validation"] = result.model_copy(
            update={"completed_at": conditions.now()}
        ).to_api()
        kopf.warn(body, reason=exc.reason, message=f"validation could not run: {exc}")
        return
    findings = [
        api.Finding(kind=f.kind.value, object=f.object, message=f.message) for f in report.findings
    ]
    summary = "no findings" if report.passed else f"{len(findings)} findings"
    patch.status["validation"] = api.ValidationResult(
        request=request,
        passed=report.passed,
        findings=findings[:50],
        finding_count=len(findings),
        message=summary + "".join(f"; note: {n}" for n in report.notes[:5]),
        completed_at=conditions.now(),
    ).to_api()
    if report.passed:
        kopf.info(body, reason=conditions.Reason.VALIDATED, message="validation: no findings")
    else:
        first = "; ".join(f.message for f in report.findings[:3])
        kopf.warn(body, reason=conditions.Reason.VALIDATION_FINDINGS, message=f"{summary}: {first}")


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reset", annotations={RESET_ANNOTATION: kopf.PRESENT})
@kopf.on.create(GROUP, VERSION, PLURAL, id="reset", annotations={RESET_ANNOTATION: kopf.PRESENT})
@kopf.on.update(GROUP, VERSION, PLURAL, id="reset", annotations={RESET_ANNOTATION: kopf.PRESENT})
def reset(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    body: kopf.Body,
    memo: Any,
    **_: Any,
) -> None:
    """Reset once per annotation value, after a Completed Backup in production."""
    request = _requested(meta, status, "reset", RESET_ANNOTATION)
    if request is None:
        return
    rt = runtime.of(memo)
    recorded = dict(status).get("reset") or {}

    def record(phase: str, message: str, **extra: Any) -> None:
        done = None if phase in ("BackingUp", "Busy") else conditions.now()
        result = api.ResetResult(
            request=request, phase=phase, message=message, completed_at=done, **extra
        )
        patch.status["reset"] = result.to_api()

    try:
        resetting.check_confirmation(meta["name"], request.partition("/")[0])
    except resetting.ResetRefused as exc:
        record("Refused", str(exc))
        kopf.warn(body, reason=conditions.Reason.RESET_REFUSED, message=str(exc))
        return
    backup = recorded.get("backup") if recorded.get("request") == request else None
    if rt.settings.environment is Environment.PRODUCTION:
        state = final_backups.advance(meta, backup, "reset")
        if not state.completed:
            why = f" (the previous one failed: {state.failure})" if state.failure else ""
            record(
                "BackingUp",
                f"waiting for Backup {state.name} before the reset{why}",
                backup=state.name,
            )
            raise kopf.TemporaryError(f"waiting for Backup {state.name}", delay=BACKUP_WAIT)
        backup = state.name
    try:
        server = rt.servers.server(directory.located(status))
        report = resetting.reset(
            server,
            meta["uid"],
            request.partition("/")[0],
            migrations.known_scripts(meta["namespace"]),
            environment=rt.settings.environment.value,
            backup=backup,
        )
        seed = api.TenantSpec.model_validate(dict(spec)).seed
        if seed is not None:
            report.reseeded = resetting.reseed(
                server,
                meta["uid"],
                seed.profile.value,
                rt.settings.environment.value,
                rt.settings.seeders_dir,
                rt.settings.instance,
                seed.seeders,
            )
    except errors.TenantDBError as exc:
        phase = "Failed" if exc.permanent else "Busy"
        record(phase, f"{exc.reason}: {exc}", backup=backup)
        if not exc.permanent:
            raise kopf.TemporaryError(str(exc), delay=rt.settings.watch.retry_delay) from exc
        kopf.warn(body, reason=conditions.Reason.RESET_FAILED, message=str(exc))
        return
    message = f"emptied {len(report.emptied)} tables; seeders run again: {', '.join(report.reseeded) or 'none'}"
    record(
        "Completed",
        message,
        backup=backup,
        emptied=len(report.emptied),
        kept=report.kept[:64],
        reseeded=report.reseeded[:64],
    )
    kopf.info(body, reason=conditions.Reason.RESET, message=message)
