"""``deletionPolicy: BackupThenDelete``: a Completed Backup before any data is dropped.

The Tenant's finalizer creates a Backup (to the operator's default storage,
``dataPolicy: Retain``, owned by nobody so that it outlives the Tenant), and
keeps the Tenant until it is Completed. A failed one is reported on the
Tenant (condition and event) and taken again after ``retry_delay``; nothing
is deleted until one succeeds or the policy is changed.
"""

from typing import Any

import kopf

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import backups as backups_api
from tenantdb.controllers import backups, kube, reporting, runtime
from tenantdb.core import errors, naming

PURPOSE_LABEL = f"{GROUP}/purpose"
MAX_TAKEN_NAMES = 20
"""Final Backup names tried in one reconcile when others are taken."""


class FinalBackupPending(errors.TenantDBError):
    """The final backup is not Completed yet: the data stays."""

    reason = conditions.Reason.BACKING_UP.value
    permanent = False


def ensure_backed_up(
    rt: runtime.Runtime, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, body: kopf.Body
) -> str:
    """The name of a Completed final Backup of the tenant; raises until there is one."""
    namespace = meta["namespace"]
    name = dict(status).get("finalBackup")
    found = (
        kube.read_custom_object(GROUP, VERSION, namespace, backups.PLURAL, name) if name else None
    )
    if found is not None and not _as_made(found, meta):
        found = None  # not the one made here (changed, or planted): left alone, not trusted
    phase = (found or {}).get("status", {}).get("phase")
    if phase == backups_api.Phase.COMPLETED:
        return str(name)
    if found is not None and phase not in (backups_api.Phase.FAILED, backups_api.Phase.EXPIRED):
        raise FinalBackupPending(f"waiting for the final Backup {name} ({phase or 'Pending'})")
    if found is not None:
        why = _ready_message(found)
        message = f"final Backup {name} failed: {why}; nothing deleted, taking another"
        _report(patch, status, meta, body, message)
        kube.delete_custom_object(GROUP, VERSION, namespace, backups.PLURAL, str(name))
    name = _create(meta, _next_name(meta, name))
    patch.status["finalBackup"] = name
    kopf.info(body, reason=conditions.Reason.BACKING_UP, message=f"taking final Backup {name}")
    raise FinalBackupPending(f"taking the final Backup {name} before deleting the data")


def _as_made(found: dict[str, Any], meta: kopf.Meta) -> bool:
    """Whether a Backup is still what ``_backup`` made for this tenant: of its name (and,
    once taken, its UID), to the default storage, kept. A namespace user may create one
    under the final name beforehand, or change ``dataPolicy`` and ``ttl`` meanwhile."""
    spec, status = found.get("spec") or {}, found.get("status") or {}
    return (
        spec.get("tenant") == meta["name"]
        and status.get("tenantUid") in (None, meta["uid"])
        and spec.get("storage") is None
        and spec.get("dataPolicy") == backups_api.DataPolicy.RETAIN
        and not spec.get("ttl")
        and (found.get("metadata") or {}).get("labels", {}).get(PURPOSE_LABEL) == "final"
    )


def _create(meta: kopf.Meta, name: str) -> str:
    """Create the final Backup under ``name``, or under the next attempt's name while one
    exists already (this finalizer records every name it creates, so that one is not its)."""
    for _ in range(MAX_TAKEN_NAMES):
        made = _backup(meta, name)
        if kube.create_custom_object(GROUP, VERSION, meta["namespace"], backups.PLURAL, made):
            return name
        name = _next_name(meta, name)
    raise FinalBackupPending(
        f"{MAX_TAKEN_NAMES} final Backup names of this tenant are taken by other objects"
    )


def _next_name(meta: kopf.Meta, previous: str | None) -> str:
    """``<tenant>-final-<uid hash>-<attempt>``: a new name per attempt, stable per tenant."""
    attempt = int(previous.rsplit("-", 1)[1]) + 1 if previous else 1
    return f"{meta['name']}-final-{naming.uid_hash(meta['uid'])[:6]}-{attempt}"


def _backup(meta: kopf.Meta, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": backups.KIND,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {f"{GROUP}/tenant": meta["name"], PURPOSE_LABEL: "final"},
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
