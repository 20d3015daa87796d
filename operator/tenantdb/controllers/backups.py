"""Handlers of the ``Backup`` kind: admit, take in the background, expire, delete.

A Backup is admitted by its create (or resume) handler, which checks the
tenant and the storage and hands the work to ``jobs``; the job writes the
status itself (Running, then Completed or Failed) with an event on every
transition. A Backup found Running after a restart was interrupted: it is
started again at the same location, so what looks Completed always is.
"""

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pydantic

import tenantdb
from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import backups as api
from tenantdb.api import tenants as tenants_api
from tenantdb.controllers import archives, directory, jobs, kube, logs, reporting, runtime
from tenantdb.core import errors
from tenantdb.core.backups import manifest as manifest_
from tenantdb.core.backups import taking

KIND = "Backup"
PLURAL = "backups"
TENANTS = "tenants"
EXPIRY_TICK = 60.0
"""Seconds between two looks at a Completed Backup's ``ttl``."""
FINISHED = (api.Phase.COMPLETED, api.Phase.FAILED, api.Phase.EXPIRED)
VERIFY_ANNOTATION = f"{GROUP}/verify"
"""Set or change its value to verify a Completed archive again (``status.verifyRequest``
records the last value acted on)."""


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def admit(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    memo: Any,
    **_: Any,
) -> None:
    """Start the backup in the background unless it has finished."""
    rt = runtime.of(memo)
    if dict(status).get("phase") in FINISHED:
        return
    job = Job.of(rt, body)
    try:
        tenant = job.tenant()
    except TenantNotReady as exc:
        job.write(api.Phase.PENDING, "False", conditions.Reason.BACKUP_PENDING, str(exc))
        raise kopf.TemporaryError(str(exc), delay=rt.settings.watch.retry_delay) from exc
    except (errors.TenantDBError, kube.ApiError) as exc:
        job.fail(exc)
        return
    rt.jobs.submit(f"backup:{meta['uid']}", lambda: job.run(tenant), group=meta["namespace"])


@kopf.on.update(GROUP, VERSION, PLURAL, annotations={VERIFY_ANNOTATION: kopf.PRESENT})
@kopf.on.resume(GROUP, VERSION, PLURAL, annotations={VERIFY_ANNOTATION: kopf.PRESENT})
def verify_on_request(
    meta: kopf.Meta, status: kopf.Status, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """Verify a Completed archive again when the annotation's value changes."""
    rt = runtime.of(memo)
    asked = dict(meta.get("annotations") or {}).get(VERIFY_ANNOTATION)
    state = dict(status)
    if state.get("phase") != api.Phase.COMPLETED or asked == state.get("verifyRequest"):
        return
    job = Job.of(rt, body)
    job.status["verifyRequest"] = asked
    rt.jobs.submit(f"backup:{meta['uid']}", job.verify, group=meta["namespace"])


@kopf.timer(GROUP, VERSION, PLURAL, interval=EXPIRY_TICK, initial_delay=EXPIRY_TICK)
def expire(
    spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """Remove a Completed Backup's archive once its ``ttl`` has passed."""
    rt = runtime.of(memo)
    ttl, done = spec.get("ttl"), dict(status).get("completedAt")
    if not ttl or not done or dict(status).get("phase") != api.Phase.COMPLETED:
        return
    if datetime.now(UTC) < _parse_time(done) + age(ttl):
        return
    job = Job.of(rt, body)
    taking.discard(job.destination().storage, job.destination().location)
    job.write(api.Phase.EXPIRED, "False", conditions.Reason.BACKUP_EXPIRED, f"ttl {ttl} passed")


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(spec: kopf.Spec, meta: kopf.Meta, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Remove the stored archive with the object, unless ``dataPolicy: Retain``."""
    rt = runtime.of(memo)
    running = rt.jobs.get(f"backup:{meta['uid']}")
    if running is not None and not running.done():
        raise kopf.TemporaryError("the backup is running; deleting once it ends", delay=5)
    if spec.get("dataPolicy") == api.DataPolicy.RETAIN:
        return
    try:
        where = Job.of(rt, body).destination()
        taking.discard(where.storage, where.location)
    except archives.BackupConfigError as exc:
        kopf.warn(body, reason=conditions.Reason.STORAGE_ERROR, message=f"data not removed: {exc}")
    except errors.TenantDBError as exc:
        kopf.warn(body, reason=conditions.Reason.STORAGE_ERROR, message=str(exc))
        raise kopf.TemporaryError(str(exc), delay=rt.settings.watch.retry_delay) from exc


def age(text: str) -> timedelta:
    """``30d``, ``12h`` or ``90m`` as a duration (``api.AGE_PATTERN``)."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass
class Job:
    """One Backup object's work: take the archive, then verify it if asked."""

    rt: runtime.Runtime
    body: dict[str, Any]
    spec: api.BackupSpec | None
    status: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, rt: runtime.Runtime, body: Any) -> "Job":
        """The job of a Backup object (its spec parsed, ``None`` if it cannot be)."""
        raw = dict(body)
        try:
            spec = api.BackupSpec.model_validate(dict(raw.get("spec") or {}))
        except pydantic.ValidationError:
            spec = None
        return cls(rt, raw, spec, dict(raw.get("status") or {}))

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def log(self) -> logs.ObjectLogger:
        """Lines about this Backup, from the job's thread."""
        return logs.about_body({"kind": KIND, **self.body})

    def destination(self) -> archives.Destination:
        """Where this Backup's archive is (the same on every attempt)."""
        meta = self.body["metadata"]
        if self.spec is None:
            raise archives.BackupConfigError("the spec cannot be read")
        prefix = archives.location(
            self.namespace, self.spec.tenant, meta["creationTimestamp"], meta["uid"]
        )
        return archives.destination(
            self.rt.settings.backups, self.namespace, self.spec.storage, prefix
        )

    def run(self, tenant: dict[str, Any]) -> None:
        """Take the backup; every outcome ends in a status and an event."""
        started = time.monotonic()
        try:
            manifest = self._take(tenant)
        except (errors.TenantDBError, kube.ApiError) as exc:
            self.fail(exc)
            return
        except Exception as exc:
            self.log.exception("backup failed")
            self.fail(exc)
            return
        reporting.BACKUP_SECONDS.observe(time.monotonic() - started)
        reporting.BACKUP_BYTES.inc(manifest.size_bytes)
        if self.spec is not None and self.spec.verify:
            self.verify()

    def fail(self, exc: Exception) -> None:
        """Failed, with the error's reason (``Error`` for the unexpected)."""
        reason = str(getattr(exc, "reason", "Error"))
        if isinstance(exc, kube.ApiError):
            reason = "KubernetesError"
        reporting.BACKUP_FAILURES.labels(reason=reason).inc()
        reporting.RECONCILE_ERRORS.labels(kind=KIND, reason=reason).inc()
        self.write(api.Phase.FAILED, "False", reason, str(exc) or type(exc).__name__, warning=True)

    def _take(self, tenant: dict[str, Any]) -> manifest_.Manifest:
        if self.spec is None:
            raise archives.BackupConfigError("the spec cannot be read")
        tenant_uid = str(tenant["metadata"]["uid"])
        where = self.destination()
        keys = archives.keys(
            self.namespace, self.spec.encryption, self.spec.tenant, tenant_uid, create=True
        )
        attempts = int(self.status.get("attempts") or 0) + 1
        server = directory.located(tenant.get("status") or {})
        self.status.update(
            startedAt=conditions.now(),
            attempts=attempts,
            tenantUid=tenant_uid,
            location=where.url,
            isolation=(tenant.get("spec") or {}).get("isolation", "schema"),
            server=server,
        )
        again = f" (attempt {attempts}: the previous one was interrupted)" if attempts > 1 else ""
        self.write(api.Phase.RUNNING, "False", conditions.Reason.BACKING_UP, f"backing up{again}")
        manifest = taking.take(
            self.rt.servers.server(server),
            tenant_uid,
            where.storage,
            where.location,
            taking.Options(
                compression=self.spec.compression.value,
                level=self.spec.compression_level,
                tenant_key=keys.tenant_key if keys else None,
                tools_dir=self.rt.settings.backups.tools_dir,
                tool_version=tenantdb.__version__,
                progress=jobs.deadline(self.rt.settings.backups.timeout),
            ),
        )
        self.status.update(
            completedAt=manifest.completed_at,
            sizeBytes=manifest.size_bytes,
            size=manifest_.human_size(manifest.size_bytes),
            sha256=manifest.sha256,
            schemaVersion=manifest.schema_version,
            tables=len(manifest.tables),
            rows=manifest.rows,
        )
        message = (
            f"{len(manifest.tables)} table(s), {manifest.rows} row(s), "
            f"{manifest_.human_size(manifest.size_bytes)} at {where.url}"
        )
        self.write(api.Phase.COMPLETED, "True", conditions.Reason.BACKUP_COMPLETED, message)
        return manifest

    def verify(self) -> None:
        """Restore the archive into a scratch copy and record whether it matches."""
        if self.spec is None:
            return
        try:
            where = self.destination()
            tenant_uid = str(self.status.get("tenantUid"))
            keys = archives.keys(
                self.namespace, self.spec.encryption, self.spec.tenant, tenant_uid, create=False
            )
            result = taking.verify(
                self.rt.servers.server(directory.located(self.status)),
                where.storage,
                where.location,
                keys.tenant_key if keys else None,
                self.rt.settings.backups.tools_dir,
                taking.Origin(self.namespace, tenant_uid),
                progress=jobs.deadline(self.rt.settings.backups.timeout),
            )
            passed, message = result.ok, "; ".join(result.mismatches)
        except errors.TenantDBError as exc:
            passed, message = False, str(exc)
        self.status["lastVerified"] = api.Verification(
            time=conditions.now(), passed=passed, message=message[:4096]
        ).to_api()
        reason = (
            conditions.Reason.VERIFIED_BACKUP if passed else conditions.Reason.VERIFICATION_FAILED
        )
        self._condition(
            conditions.ConditionType.VERIFIED, "True" if passed else "False", reason, message
        )
        self._patch()
        self._event(reason, message or "archive restored and matched its manifest", not passed)

    def tenant(self) -> dict[str, Any]:
        """The Tenant backed up: it must exist and be provisioned."""
        if self.spec is None:
            raise archives.BackupConfigError("the spec cannot be read")
        tenant = kube.read_custom_object(GROUP, VERSION, self.namespace, TENANTS, self.spec.tenant)
        if tenant is None:
            raise TenantNotFound(
                f"Tenant {self.spec.tenant!r} does not exist in namespace {self.namespace}"
            )
        phase = (tenant.get("status") or {}).get("phase")
        usable = (tenants_api.Phase.READY, tenants_api.Phase.SUSPENDED, tenants_api.Phase.DELETING)
        if phase not in usable:
            raise TenantNotReady(f"Tenant {self.spec.tenant!r} is {phase or 'not provisioned'}")
        return tenant

    def write(
        self,
        phase: api.Phase,
        ready: conditions.ConditionStatus,
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Phase, Ready and the fields gathered so far, then an event if that is a
        transition (a Backup waiting for its tenant is not re-announced on every retry)."""
        before = (self.status.get("phase"), self._ready_reason())
        self.status["phase"] = phase.value
        generation = int(self.body["metadata"].get("generation") or 0)
        current = reporting.current_conditions(self.status)
        updated = conditions.set_ready(current, phase.value, ready, reason, message, generation)
        self.status["conditions"] = [c.to_api() for c in updated]
        self.status["observedGeneration"] = generation
        self._patch()
        if before != (phase.value, reason):
            self._event(reason, message, warning)

    def _ready_reason(self) -> str | None:
        for condition in self.status.get("conditions") or []:
            if condition.get("type") == conditions.ConditionType.READY:
                return str(condition.get("reason"))
        return None

    def _condition(
        self,
        type_: conditions.ConditionType,
        value: conditions.ConditionStatus,
        reason: str,
        message: str,
    ) -> None:
        generation = int(self.body["metadata"].get("generation") or 0)
        current = reporting.current_conditions(self.status)
        updated = conditions.set_condition(current, type_, value, reason, message, generation)
        self.status["conditions"] = [c.to_api() for c in updated]
        self.status["observedGeneration"] = generation

    def _patch(self) -> None:
        try:
            kube.patch_custom_status(GROUP, VERSION, self.namespace, PLURAL, self.name, self.status)
        except kube.ApiError as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to tell
                raise

    def _event(self, reason: str, message: str, warning: bool) -> None:
        meta = self.body["metadata"]
        involved = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "namespace": self.namespace,
            "name": self.name,
            "uid": meta["uid"],
        }
        try:
            kube.post_event(involved, "Warning" if warning else "Normal", reason, message)
        except kube.ApiError as exc:
            self.log.warning("event %s not posted: %s", reason, exc)


class TenantNotFound(errors.TenantDBError):
    """The Backup names no Tenant of its namespace."""

    reason = conditions.Reason.TENANT_NOT_FOUND.value


class TenantNotReady(errors.TenantDBError):
    """The Tenant is not provisioned yet (or failed): there is nothing consistent to back up."""

    reason = conditions.Reason.BACKUP_FAILED.value
