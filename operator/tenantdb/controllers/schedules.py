"""Handlers of the ``BackupSchedule`` kind: create Backups on a cron schedule, apply retention.

A timer looks at each schedule every ``TICK`` seconds: if a run is due
(the next cron time after the last run, or after creation), it creates a
Backup owned by the schedule, named after the run's time, so that a
replica or a restart that looks again creates the same name and the API
server refuses the duplicate. Retention then deletes the oldest Backups
beyond ``keep`` and those older than ``maxAge`` (their archives go with
them, unless their ``dataPolicy`` retains them), and again whenever one of
the schedule's Backups completes, so that ``keep`` holds between runs too,
not only from the next run on. Runs missed while the
operator was down are made up by one Backup, not one per missed run.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic
from croniter import croniter

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import backups as api
from tenantdb.controllers import backups, kube, reporting, runtime

PLURAL = "backupschedules"
TICK = 1.0
"""Seconds between two looks at a schedule (cheap: no API call unless a run is due)."""
SCHEDULE_LABEL = f"{GROUP}/schedule"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK, idle=None)
def tick(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    **_: Any,
) -> None:
    """Create the Backup that is due, then apply retention."""
    runtime.of(memo)
    generation = int(meta.get("generation") or 0)
    try:
        schedule = api.BackupScheduleSpec.model_validate(dict(spec))
        due = next_run(schedule.schedule, _last(meta, status, schedule))
    except (pydantic.ValidationError, ValueError) as exc:
        _set(patch, status, generation, api.SchedulePhase.FAILED, "False", str(exc))
        return
    now = datetime.now(UTC)
    next_text = due.strftime(TIME_FORMAT)
    if schedule.suspend:
        if dict(status).get("phase") != api.SchedulePhase.SUSPENDED:
            _set(patch, status, generation, api.SchedulePhase.SUSPENDED, "True", "suspended")
        return
    if due > now:
        if dict(status).get("nextScheduleTime") != next_text or not dict(status).get("phase"):
            patch.status["nextScheduleTime"] = next_text
            _set(patch, status, generation, api.SchedulePhase.ACTIVE, "True", f"next {next_text}")
        return
    now = now.replace(microsecond=0)
    name = _run(meta, schedule, now)
    kopf.info(body, reason=conditions.Reason.SCHEDULED, message=f"created Backup {name}")
    patch.status["lastScheduleTime"] = now.strftime(TIME_FORMAT)
    patch.status["lastBackup"] = name
    following = next_run(schedule.schedule, now)
    patch.status["nextScheduleTime"] = following.strftime(TIME_FORMAT)
    message = f"last {name}, next {following.strftime(TIME_FORMAT)}"
    _set(patch, status, generation, api.SchedulePhase.ACTIVE, "True", message)
    _retain(meta, schedule, patch, now)


def next_run(expression: str, after: datetime) -> datetime:
    """The first cron time after ``after`` (six fields: seconds first). ``ValueError`` if
    the expression is not one."""
    seconds_first = len(expression.split()) == 6
    if not croniter.is_valid(expression, second_at_beginning=seconds_first):
        raise ValueError(f"{expression!r} is not a cron expression")
    found = croniter(expression, after, second_at_beginning=seconds_first).get_next(datetime)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Child:
    """A Backup the schedule made, as retention sees it."""

    name: str
    created: datetime
    phase: str | None


def expired(
    children: list[Child], keep: int | None, max_age_seconds: float | None, now: datetime
) -> list[str]:
    """Which Backups retention deletes: beyond the newest ``keep`` Completed ones, and
    any older than ``max_age``. A Backup still running is never deleted."""
    finished = [c for c in children if c.phase in backups.FINISHED]
    doomed: set[str] = set()
    if keep is not None:
        completed = sorted(
            (c for c in finished if c.phase == api.Phase.COMPLETED),
            key=lambda c: c.created,
            reverse=True,
        )
        doomed.update(c.name for c in completed[keep:])
    if max_age_seconds is not None:
        doomed.update(
            c.name for c in finished if (now - c.created).total_seconds() > max_age_seconds
        )
    return sorted(doomed)


def _last(meta: kopf.Meta, status: kopf.Status, schedule: api.BackupScheduleSpec) -> datetime:
    """The time the next run is counted from: the last run, else creation (the epoch
    if ``immediate``, so the first run is due at once)."""
    last = dict(status).get("lastScheduleTime")
    if last:
        return _time(last)
    if schedule.immediate:
        return datetime.fromtimestamp(0, UTC)
    return _time(meta["creationTimestamp"])


def _run(meta: kopf.Meta, schedule: api.BackupScheduleSpec, when: datetime) -> str:
    """Create the run's Backup (an existing one of that name is that run already)."""
    name = f"{meta['name'][:45]}-{when.strftime('%Y%m%d%H%M%S')}"
    options = schedule.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        include={"storage", "compression", "compression_level", "encryption", "verify"},
    )
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": backups.KIND,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {SCHEDULE_LABEL: meta["name"], f"{GROUP}/tenant": schedule.tenant},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "BackupSchedule",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"tenant": schedule.tenant, **options},
    }
    kube.create_custom_object(GROUP, VERSION, meta["namespace"], backups.PLURAL, body)
    return name


def just_completed(event: kopf.RawEvent, meta: kopf.Meta, status: kopf.Status, **_: Any) -> bool:
    """Whether a scheduled Backup's event is its completion seen live: not the initial
    listing at start (left to the schedule's next look, so a restart costs no call per
    Backup), nor a Backup being deleted (retention's own doing). Pure: kopf asks it
    on the event loop, so the other events of scheduled Backups never reach a thread."""
    return (
        event.get("type") == "MODIFIED"
        and not meta.get("deletionTimestamp")
        and dict(status).get("phase") == api.Phase.COMPLETED
    )


@kopf.on.event(
    GROUP, VERSION, backups.PLURAL, labels={SCHEDULE_LABEL: kopf.PRESENT}, when=just_completed
)
def completed(meta: kopf.Meta, **_: Any) -> None:
    """A scheduled Backup has just completed: apply its schedule's retention now."""
    namespace, name = str(meta["namespace"]), str(meta["labels"][SCHEDULE_LABEL])
    owner = kube.read_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    if owner is None:
        return
    try:
        schedule = api.BackupScheduleSpec.model_validate(owner.get("spec") or {})
    except pydantic.ValidationError:
        return  # the schedule's own look reports it
    _delete_expired(namespace, schedule, _children(namespace, name), datetime.now(UTC))


def _retain(
    meta: kopf.Meta, schedule: api.BackupScheduleSpec, patch: kopf.Patch, now: datetime
) -> None:
    children = _children(str(meta["namespace"]), str(meta["name"]))
    completed = [c for c in children if c.phase == api.Phase.COMPLETED]
    if completed:
        patch.status["lastSuccessfulBackup"] = max(completed, key=lambda c: c.created).name
    _delete_expired(str(meta["namespace"]), schedule, children, now)


def _children(namespace: str, schedule_name: str) -> list[Child]:
    """The Backups a schedule made (one labelled list call)."""
    listed = kube.list_labelled_objects(
        GROUP, VERSION, namespace, backups.PLURAL, f"{SCHEDULE_LABEL}={schedule_name}"
    )
    return [
        Child(
            name=str(obj["metadata"]["name"]),
            created=_time(obj["metadata"]["creationTimestamp"]),
            phase=(obj.get("status") or {}).get("phase"),
        )
        for obj in listed
        if not obj["metadata"].get("deletionTimestamp")
    ]


def _delete_expired(
    namespace: str, schedule: api.BackupScheduleSpec, children: list[Child], now: datetime
) -> None:
    retention = schedule.retention
    if retention is None:
        return
    max_age = backups.age(retention.max_age).total_seconds() if retention.max_age else None
    for name in expired(children, retention.keep, max_age, now):
        kube.delete_custom_object(GROUP, VERSION, namespace, backups.PLURAL, name)


def _set(
    patch: kopf.Patch,
    status: kopf.Status,
    generation: int,
    phase: api.SchedulePhase,
    ready: conditions.ConditionStatus,
    message: str,
) -> None:
    reason = {
        api.SchedulePhase.ACTIVE: conditions.Reason.SCHEDULED,
        api.SchedulePhase.SUSPENDED: conditions.Reason.SCHEDULE_SUSPENDED,
        api.SchedulePhase.FAILED: conditions.Reason.INVALID_SCHEDULE,
    }[phase]
    reporting.write_ready(patch, status, generation, phase.value, ready, reason, message)


def _time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
