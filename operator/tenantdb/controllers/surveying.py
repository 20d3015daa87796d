"""The usage survey's thread: sweep, publish metrics, write ``status.usage`` and ``Healthy``.

One thread per operator, in the style of the statement watchdog
(``patrolling``): every ``usage.interval`` seconds one ``usage.Survey.sweep``
(a few catalog queries for every tenant of the server, never one per tenant),
one paged list of the Tenant objects, and a status write only for the tenants
whose health changed, whose numbers moved noticeably, or whose usage is older
than ``usage.status_refresh``: at 10,000 tenants, a quiet server costs the
API server one list per interval and a few writes, not 10,000. Each page's
writes are sent before the next page is read, so the survey holds one page of
decoded bodies, not every Tenant's (at 10,000, about 100 MB every interval).
Refreshes are spread: the tenants first written in one sweep come due over the
next ``status_refresh``, not all in one sweep (``first_refresh``), and after a
restart what an object shows counts as written (``on_record``), so neither a
burst of new tenants nor a new leader makes a burst of writes.

The ``Healthy`` condition is written with the object's ``resourceVersion`` as
a precondition, over the conditions the object has now, so no other
condition is lost; a handler that writes its own conditions from an older
view may drop ``Healthy``, and the next sweep puts it back.
"""

import logging
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import tenants as api
from tenantdb.controllers import directory, kube, logs, reporting, runtime
from tenantdb.core import errors, usage
from tenantdb.settings import UsageSettings

logger = logging.getLogger("tenantdb.usage")

PLURAL = "tenants"
BYTES_CHANGE = 0.1
"""A relative change of size that is written before ``status_refresh`` is due."""


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of a written ``status.usage`` that decide whether it is written again:
    kept for every tenant, so a few numbers rather than the whole ``TenantUsage``."""

    tables: int | None
    connections: int
    invalid_indexes: tuple[str, ...] | None
    transaction_open: bool
    size: int
    """Bytes of its tables or its database, else of its shared space; 0 if unknown."""

    @classmethod
    def of(cls, u: usage.TenantUsage) -> "Figures":
        return cls(
            tables=u.tables,
            connections=u.connections,
            invalid_indexes=u.invalid_indexes,
            transaction_open=u.oldest_transaction is not None,
            size=u.bytes or u.space_bytes or 0,
        )


@dataclass(frozen=True, slots=True)
class Written:
    """What was last written for one tenant, and from when (monotonic seconds) its
    ``status_refresh`` counts (see ``first_refresh``)."""

    at: float
    figures: Figures
    health: tuple[str, ...]


def first_refresh(uid: str, now: float, refresh: float) -> float:
    """``Written.at`` for a tenant's first write: ``now`` less a share of ``refresh`` fixed
    by its uid, so the tenants first written in one sweep (all of them, after a burst)
    come due over a whole ``refresh`` afterwards, a share in each sweep, not all at once
    (10,000 writes, and as many watch events, every ``refresh``). Pure."""
    return now - refresh * (zlib.crc32(uid.encode()) / 2**32)


def on_record(
    body: Mapping[str, Any], measured: usage.TenantUsage, on_object: tuple[str, ...] | None
) -> Written | None:
    """What the object already shows, as if this process had written it: after a restart
    (or a change of leader) a tenant whose status is recent and right is not written again.
    None when it shows no usage. Pure."""
    shown = (body.get("status") or {}).get("usage") or {}
    stamp = shown.get("measuredAt")
    if not stamp or on_object is None:
        return None
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    listed = shown.get("invalidIndexes") or []
    seen = Figures(
        tables=shown.get("tables"),
        connections=int(shown.get("connections") or 0),
        invalid_indexes=tuple(listed) if listed or measured.invalid_indexes is not None else None,
        transaction_open=shown.get("oldestTransactionSeconds") is not None,
        size=shown.get("bytes") or shown.get("spaceBytes") or 0,
    )
    age = (measured.measured_at - then).total_seconds()
    return Written(time.monotonic() - age, seen, on_object)


def health_of(problems: list[usage.Problem]) -> tuple[conditions.ConditionStatus, str, str]:
    """The ``Healthy`` condition's status, reason and message."""
    if not problems:
        return "True", conditions.Reason.HEALTHY.value, "within every usage threshold"
    return "False", problems[0].reason.value, "; ".join(p.message for p in problems)


def moved(before: Figures, now: Figures) -> bool:
    """Whether the figures changed enough to be written before the refresh is due. Pure."""
    if (before.tables, before.connections, before.invalid_indexes, before.transaction_open) != (
        now.tables,
        now.connections,
        now.invalid_indexes,
        now.transaction_open,
    ):
        return True
    return abs(now.size - before.size) > BYTES_CHANGE * max(before.size, 1)


def due(
    previous: Written | None,
    current: usage.TenantUsage,
    health: tuple[str, ...],
    on_object: tuple[str, ...] | None,
    now: float,
    refresh: float,
) -> bool:
    """Whether to write this tenant's status now. Pure."""
    if previous is None or on_object != health or previous.health != health:
        return True
    return moved(previous.figures, Figures.of(current)) or now - previous.at >= refresh


def usage_status(u: usage.TenantUsage) -> dict[str, Any]:
    """``status.usage`` with explicit nulls, so a merge patch removes what is gone."""
    model = api.Usage(
        bytes=u.bytes,
        space_bytes=u.space_bytes,
        tables=u.tables,
        connections=u.connections,
        connection_limit=u.connection_limit,
        oldest_transaction_seconds=(
            None if u.oldest_transaction is None else int(u.oldest_transaction)
        ),
        invalid_indexes=list((u.invalid_indexes or ())[:32]),
        measured_at=u.measured_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return model.model_dump(mode="json", by_alias=True)


class Surveyor:
    """One thread sweeping one server until stopped."""

    def __init__(self, rt: runtime.Runtime, config: UsageSettings) -> None:
        self.rt = rt
        self.config = config
        self.surveys: dict[str, usage.Survey] = {}
        """One survey per server: each remembers which of its database tenants it visited."""
        self.written: dict[str, Written] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenantdb-usage", daemon=True)

    def start(self) -> None:
        """Begin sweeping in the background."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current sweep and end the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def tick(self) -> int:
        """One sweep; returns the statuses written."""
        started = time.monotonic()
        found = [u for member in self.rt.servers.members() for u in self._sweep(member)]
        if not found and not self.surveys:
            return 0
        reporting.USAGE_SWEEP_SECONDS.observe(time.monotonic() - started)
        publish(found, self.config)
        measured = {u.uid: u for u in found}
        listed: set[str] = set()
        written = 0
        for body in kube.list_pages(GROUP, VERSION, PLURAL, self.rt.settings.watch.namespace):
            uid = str(body["metadata"]["uid"])
            listed.add(uid)
            if uid in measured:
                written += self._write(measured[uid], body)
        for gone in [uid for uid in self.written if uid not in listed]:
            del self.written[gone]
        return written

    def _sweep(self, member: directory.Member) -> list[usage.TenantUsage]:
        """One server's tenants; a server that fails is skipped (and said so), not the rest."""
        survey = self.surveys.setdefault(
            member.name, usage.Survey(visits=self.config.database_visits)
        )
        try:
            return survey.sweep(member.server, namespace=self.rt.settings.watch.namespace)
        except errors.TenantDBError as exc:
            logger.warning("usage sweep of server %s failed: %s", member.name, exc)
            return []

    def _write(self, u: usage.TenantUsage, body: Mapping[str, Any]) -> bool:
        problems = usage.assess(u, self.config)
        status, reason, message = health_of(problems)
        health = (status, reason, message)
        present = reporting.current_conditions(body.get("status"))
        on_object = next(
            ((c.status, c.reason, c.message) for c in present if c.type == "Healthy"), None
        )
        now, refresh = time.monotonic(), self.config.status_refresh
        previous = self.written.get(u.uid) or on_record(body, u, on_object)
        if previous is not None and u.uid not in self.written:
            self.written[u.uid] = previous
        if not due(previous, u, health, on_object, now, refresh):
            return False
        generation = int(body["metadata"].get("generation") or 0)
        updated = conditions.set_condition(
            present, conditions.ConditionType.HEALTHY, status, reason, message, generation
        )
        patch = {"usage": usage_status(u), "conditions": [c.to_api() for c in updated]}
        meta = body["metadata"]
        if not kube.patch_custom_status_at(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], patch, meta["resourceVersion"]
        ):
            return False  # changed meanwhile: the next sweep writes it
        since = now if previous is not None else first_refresh(u.uid, now, refresh)
        self.written[u.uid] = Written(since, Figures.of(u), health)
        if on_object is None or on_object[0] != status:
            logs.about("Tenant", u.namespace, u.name, u.uid).info("%s: %s", reason, message)
        return True

    def _run(self) -> None:
        while not self._stopping.wait(self.config.interval):
            try:
                if self.rt.leadership.active():
                    self.tick()
            except Exception:
                logger.exception("usage sweep crashed")  # keep sweeping: health must not go stale


def publish(found: list[usage.TenantUsage], config: UsageSettings) -> None:
    """Server-level gauges always; one series per tenant only when asked for."""
    totals = usage.aggregate(found, config)
    reporting.USAGE_TENANTS.clear()
    for (isolation, plan), count in totals.tenants.items():
        reporting.USAGE_TENANTS.labels(isolation=isolation, plan=plan).set(count)
    reporting.USAGE_NEAR_LIMIT.clear()
    for plan, count in totals.near_limit.items():
        reporting.USAGE_NEAR_LIMIT.labels(plan=plan).set(count)
    for reason, count in totals.unhealthy.items():
        reporting.USAGE_UNHEALTHY.labels(reason=reason).set(count)
    for isolation, size in totals.bytes.items():
        reporting.USAGE_BYTES.labels(isolation=isolation).set(size)
    reporting.TENANT_BYTES.clear()
    reporting.TENANT_CONNECTIONS.clear()
    if not config.tenant_metrics:
        return
    for u in found:
        reporting.TENANT_CONNECTIONS.labels(namespace=u.namespace, tenant=u.name).set(u.connections)
        if u.bytes is not None:
            reporting.TENANT_BYTES.labels(namespace=u.namespace, tenant=u.name).set(u.bytes)


def start(rt: runtime.Runtime) -> Surveyor | None:
    """Start the survey with the operator's settings, or None if it is turned off."""
    config = rt.settings.usage
    if config.interval <= 0:
        logger.info("usage survey turned off (TENANTDB_USAGE_INTERVAL=0)")
        return None
    surveyor = Surveyor(rt, config)
    surveyor.start()
    return surveyor
