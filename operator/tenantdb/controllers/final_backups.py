"""``deletionPolicy: BackupThenDelete``: a Completed Backup before any data is dropped.

The Tenant's finalizer creates a Backup (to the operator's default storage,
``dataPolicy: Retain``, owned by nobody so that it outlives the Tenant), and
keeps the Tenant until it is Completed. A failed one is reported on the
Tenant (condition and event) and taken again after ``retry_delay``; nothing
is deleted until one succeeds or the policy is changed.
"""

from dataclasses import dataclass
from typing import Any

import kopf

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import backups as backups_api
from tenantdb.controllers import backups, kube, reporting, runtime
from tenantdb.core import errors, naming

PURPOSE_LABEL = f"{GROUP}/purpose"
MAX_TAKEN_NAMES = 20
"""Backup names tried in one reconcile when others are taken."""


class FinalBackupPending(errors.TenantDBError):
    """The final backup is not Completed yet: the data stays."""

    reason = conditions.Reason.BACKING_UP.value
    permanent = False


def ensure_backed_up(
    rt: runtime.Runtime, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, body: kopf.Body
) -> str:
    """The name of a Completed final Backup of the tenant; raises until there is one."""
    state = advance(meta, dict(status).get("finalBackup"), "final")
    if state.completed:
        return state.name
    if not state.created:
        raise FinalBackupPending(f"waiting for the final Backup {state.name} ({state.phase})")
    if state.failure is not None:
        message = f"final Backup {state.previous} failed: {state.failure}; nothing deleted, taking another"
        _report(patch, status, meta, body, message)
    patch.status["finalBackup"] = state.name
    kopf.info(
        body, reason=conditions.Reason.BACKING_UP, message=f"taking final Backup {state.name}"
    )
    raise FinalBackupPending(f"taking the final Backup {state.name} before deleting the data")


@dataclass(frozen=True)
class BackupState:
    """Where a Backup taken before a destructive step stands (``advance``)."""

    name: str
    completed: bool
    phase: str = "Pending"
    created: bool = False
    """A new Backup was created by this call."""
    previous: str | None = None
    failure: str | None = None
    """Why the previous one failed (it was deleted, and a new one created)."""


def advance(meta: kopf.Meta, recorded: str | None, purpose: str) -> BackupState:
    """The recorded Backup's state; a new one is created when there is none or it failed.

    Shared by ``BackupThenDelete`` (purpose ``final``) and the reset annotation
    (``reset``): the Backup goes to the operator's default storage with
    ``dataPolicy: Retain`` and is owned by nobody, so it outlives the Tenant.
    """
    namespace = meta["namespace"]
    found = (
        kube.read_custom_object(GROUP, VERSION, namespace, backups.PLURAL, recorded)
        if recorded
        else None
    )
    if found is not None and not _as_made(found, meta, purpose):
        found = None  # not the one made here (changed, or planted): left alone, not trusted
    phase = (found or {}).get("status", {}).get("phase")
    if found is not None and phase == backups_api.Phase.COMPLETED:
        return BackupState(str(recorded), completed=True, phase=str(phase))
    if found is not None and phase not in (backups_api.Phase.FAILED, backups_api.Phase.EXPIRED):
        return BackupState(str(recorded), completed=False, phase=str(phase or "Pending"))
    failure = None
    if found is not None:
        failure = _ready_message(found)
        kube.delete_custom_object(GROUP, VERSION, namespace, backups.PLURAL, str(recorded))
    name = _create(meta, _next_name(meta, recorded, purpose), purpose)
    return BackupState(name, completed=False, created=True, previous=recorded, failure=failure)


def _as_made(found: dict[str, Any], meta: kopf.Meta, purpose: str) -> bool:
    """Whether a Backup is still what ``_backup`` made for this tenant: of its name (and,
    once taken, its UID), to the default storage, kept. A namespace user may create one
    under the next name beforehand, or change ``dataPolicy`` and ``ttl`` meanwhile."""
    spec, status = found.get("spec") or {}, found.get("status") or {}
    return (
        spec.get("tenant") == meta["name"]
        and status.get("tenantUid") in (None, meta["uid"])
        and spec.get("storage") is None
        and spec.get("dataPolicy") == backups_api.DataPolicy.RETAIN
        and not spec.get("ttl")
        and (found.get("metadata") or {}).get("labels", {}).get(PURPOSE_LABEL) == purpose
    )


def _create(meta: kopf.Meta, name: str, purpose: str) -> str:
    """Create the Backup under ``name``, or under the next attempt's name while one exists
    already (every name this code creates is recorded, so an existing one is not its)."""
    for _ in range(MAX_TAKEN_NAMES):
        made = _backup(meta, name, purpose)
        if kube.create_custom_object(GROUP, VERSION, meta["namespace"], backups.PLURAL, made):
            return name
        name = _next_name(meta, name, purpose)
    raise FinalBackupPending(
        f"{MAX_TAKEN_NAMES} {purpose} Backup names of this tenant are taken by other objects"
    )


def _next_name(meta: kopf.Meta, previous: str | None, purpose: str) -> str:
    """``<tenant>-<purpose>-<uid hash>-<attempt>``: a new name per attempt, stable per tenant."""
    attempt = int(previous.rsplit("-", 1)[1]) + 1 if previous else 1
    return f"{meta['name']}-{purpose}-{naming.uid_hash(meta['uid'])[:6]}-{attempt}"


def _backup(meta: kopf.Meta, name: str, purpose: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": backups.KIND,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {f"{GROUP}/tenant": meta["name"], PURPOSE_LABEL: purpose},
        },
        "spec": {"tenant": meta["name"], "dataPolicy": backups_api.DataPolicy.RETAIN.value},
    }


def _ready_message(found: dict[str, Any]) -> str:
    for condition in (found.get("status") or {}).get("conditions") or []:
        if condition.get("type") == conditions.ConditionType.READY:
            return str(condition.get("message") or condition.get("reason"))
    return "no reason given"


def _report(
    patch: kopf.Patch, status: kopf.Status, meta: kopf.Meta, body: kopf.Body, message: str
) -> None:
    generation = int(meta.get("generation") or 0)
    reporting.write_condition(
        patch,
        status,
        generation,
        conditions.ConditionType.READY,
        "False",
        conditions.Reason.BACKUP_FAILED,
        message,
    )
    kopf.warn(body, reason=conditions.Reason.BACKUP_FAILED, message=message)
