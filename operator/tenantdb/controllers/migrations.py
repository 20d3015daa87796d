"""Handlers of the ``Migration`` kind, and ``catch_up`` for the Tenant controller.

One daemon per Migration runs *passes*: read the spec, ask the ledger
where the rollout stands (one query), run what may run now (canaries
first, lower versions first, within the failure budget), write status.
Status writes are batched: at most one per ``STATUS_INTERVAL`` while
tenants finish, plus one at the end of a pass. A pass starts at once when
the spec or the ``tenantdb.io/retry`` / ``tenantdb.io/accept-checksum``
annotations change, every ``ACTIVE_DELAY`` seconds while work remains
(busy, retrying or waiting tenants), and otherwise when the namespace's
tenants or migrations change (checked in memory every ``IDLE_DELAY``, in
the ledger every ``RECHECK``).

Everything durable is in the ledger, so an operator killed mid-rollout
and restarted picks up where the ledger says: nothing runs twice.
"""

import asyncio
import contextlib
import copy
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic
from prometheus_client import Counter, Histogram

from tenantdb import settings as settings_
from tenantdb.api import GROUP, VERSION, conditions
from tenantdb.api import migrations as api
from tenantdb.controllers import caches, directory, kube, reporting, runtime
from tenantdb.core import commands as core_commands
from tenantdb.core import errors
from tenantdb.core.migrations import commands, fleet, outcomes, planning, reconciling, scripts
from tenantdb.core.migrations import errors as migration_errors

KIND = "Migration"
PLURAL = "migrations"
RETRY_ANNOTATION = f"{GROUP}/retry"
"""Set to a new value to retry the tenants where this migration failed."""
ACCEPT_ANNOTATION = f"{GROUP}/accept-checksum"
"""Set to the current checksum to accept an edited ``up`` as applied (drift override)."""
ACTIVE_DELAY = 1.0
"""Seconds between passes while tenants are busy, retrying or waiting for lower versions."""
IDLE_DELAY = 3.0
"""Seconds between in-memory checks of a settled migration's inputs."""
RECHECK = 30.0
"""Seconds between ledger reads of a settled migration whose inputs did not change."""
STATUS_INTERVAL = 1.0
"""Seconds between two status writes while a rollout runs."""
FAILURES_LISTED = 20
TENANT_RESULTS = Counter(
    "tenantdb_migration_tenant_results_total",
    "Migration results per tenant, by outcome",
    ["outcome"],
)
TENANT_SECONDS = Histogram(
    "tenantdb_migration_apply_seconds", "Seconds one migration took on one tenant"
)
ROLLOUT_SECONDS = Histogram(
    "tenantdb_migration_rollout_seconds",
    "Seconds from a rollout's start to its end (startedAt to finishedAt), every tenant",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
Mode = planning.Mode
Reason = conditions.Reason


@dataclass(frozen=True)
class TenantRef:
    """A Tenant object as selectors and fingerprints need it."""

    uid: str
    name: str
    labels: tuple[tuple[str, str], ...]
    phase: str | None


def _tenant_ref(body: Mapping[str, Any]) -> tuple[str, TenantRef]:
    """A Tenant under its namespace, with its labels (for ``tenantSelector``)."""
    meta, text = body["metadata"], caches.text
    labels = tuple(sorted((text(k), text(v)) for k, v in (meta.get("labels") or {}).items()))
    phase = caches.text_or_none((body.get("status") or {}).get("phase"))
    ref = TenantRef(text(meta["uid"]), text(meta["name"]), labels, phase)
    return text(meta.get("namespace") or ""), ref


def _version(body: Mapping[str, Any]) -> tuple[str, planning.Declared] | None:
    """A Migration under its namespace, for ordering across versions (None if invalid)."""
    meta = body["metadata"]
    declared = declare(str(meta["name"]), body.get("spec"), body.get("status"))
    return None if declared is None else (str(meta.get("namespace") or ""), declared)


TENANTS: caches.Cache[TenantRef] = caches.Cache("tenants", _tenant_ref)
VERSIONS: caches.Cache[planning.Declared] = caches.Cache(PLURAL, _version)


def declare(name: str, spec: Any, status: Any) -> planning.Declared | None:
    """What ordering and catch-up need to know of a Migration (None if its spec is invalid)."""
    parsed = _parse_spec(spec)
    return None if parsed is None else _declared(name, parsed, status)


def _parse_spec(spec: Any) -> api.MigrationSpec | None:
    try:
        return api.MigrationSpec.model_validate(dict(spec or {}))
    except pydantic.ValidationError:
        return None


def _declared(
    name: str, parsed: api.MigrationSpec, status: Any, meta: Mapping[str, Any] | None = None
) -> planning.Declared:
    meta = meta or {}
    return planning.Declared(
        name=name,
        version=parsed.version,
        scope=parsed.scope,
        selector=parsed.tenant_selector,
        approved=parsed.approved,
        dry_run=parsed.dry_run,
        rollback=parsed.rollback,
        halted=_halted(status),
        why=_ready_reason(status) if _halted(status) else "",
        established=_established(status),
        created=str(meta.get("creationTimestamp") or ""),
        uid=str(meta.get("uid") or ""),
    )


def _halted(status: Any) -> bool:
    """Halted, or refused for its spec: nothing of it runs until a person acts."""
    phase = (status or {}).get("phase")
    refused = phase == api.Phase.FAILED and _ready_reason(status) in (
        Reason.INVALID_SPEC,
        migration_errors.InvalidScript.reason,
    )
    return phase == api.Phase.HALTED or refused


def _established(status: Any) -> bool:
    """Reconciled at least once, and not refused as a duplicate or for its spec."""
    refusals = (Reason.DUPLICATE_VERSION, Reason.INVALID_SPEC)
    return (status or {}).get("observedGeneration") is not None and (
        _ready_reason(status) not in refusals
    )


def _ready_reason(status: Any) -> str:
    ready = [c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return str(ready[0].get("reason") or "") if ready else ""


def _parse_object(
    obj: Mapping[str, Any],
) -> tuple[planning.Declared, api.MigrationSpec] | None:
    """A listed Migration's declaration and spec, validated once (None: deleted or invalid)."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    parsed = _parse_spec(obj.get("spec"))
    if parsed is None:
        return None
    return _declared(str(meta.get("name", "")), parsed, obj.get("status"), meta), parsed


def _declare_object(obj: Mapping[str, Any]) -> planning.Declared | None:
    found = _parse_object(obj)
    return None if found is None else found[0]


def _trigger(body: Any) -> tuple[Any, ...]:
    annotations = body.get("metadata", {}).get("annotations") or {}
    generation = body.get("metadata", {}).get("generation")
    return (generation, annotations.get(RETRY_ANNOTATION), annotations.get(ACCEPT_ANNOTATION))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def wake(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Start a pass at once when the spec or our annotations change (not on status writes)."""
    key = _trigger(body)
    if memo.get("trigger") != key:
        memo["trigger"] = key
        event = memo.get("wake")
        if isinstance(event, asyncio.Event):
            event.set()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=60.0)
async def roll_out(
    body: kopf.Body,
    memo: Any,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    """Run passes until the object is deleted or the operator stops."""
    rt = await asyncio.to_thread(runtime.of, memo)
    wakeup = asyncio.Event()
    memo["wake"] = wakeup
    stop = threading.Event()
    state = _State.resume(body)
    try:
        while not stopped:
            wakeup.clear()
            namespace = str(body["metadata"]["namespace"])
            rollout_pass = _Pass(
                rt,
                copy.deepcopy(dict(body)),
                VERSIONS.get(namespace),
                TENANTS.get(namespace),
                state,
                stop,
                body,
                logger,
                directory.declared(),
            )
            delay = await asyncio.to_thread(rollout_pass.run)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=delay)
    except asyncio.CancelledError:
        stop.set()
        raise


@dataclass
class _State:
    """What a daemon remembers between passes (lost on restart; the ledger is the truth)."""

    written: dict[str, Any] | None = None
    fingerprint: tuple[Any, ...] | None = None
    settled: bool = False
    checked_at: float = 0.0
    announced: str | None = None

    @classmethod
    def resume(cls, body: Any) -> "_State":
        status = copy.deepcopy(dict(body.get("status") or {}))
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        return cls(written=status or None, announced=ready[0]["reason"] if ready else None)


class _Pass:
    """One look at a Migration and the work that may run now; runs in a thread."""

    def __init__(
        self,
        rt: runtime.Runtime,
        body: dict[str, Any],
        declared: list[planning.Declared],
        tenants: list[TenantRef],
        state: _State,
        stop: threading.Event,
        live_body: kopf.Body,
        logger: kopf.Logger,
        servers: frozenset[str] = frozenset(),
    ) -> None:
        self.rt, self.body, self.declared, self.tenants = rt, body, declared, tenants
        self.servers = servers
        """The declared DatabaseServers (``directory.declared``)."""
        self.state, self.stop, self.live_body, self.logger = state, stop, live_body, logger
        meta = body["metadata"]
        self.name, self.namespace = str(meta["name"]), str(meta["namespace"])
        self.generation = int(meta.get("generation") or 0)
        self.annotations: dict[str, str] = dict(meta.get("annotations") or {})
        self.checksum: str | None = None
        self.handled_retry: str | None = self._status().get("lastHandledRetry")
        self.write_lock = threading.Lock()
        self.findings: list[str] = []

    def run(self) -> float:
        """Do what may be done now; return seconds until the next pass."""
        fingerprint = (_trigger(self.body), tuple(self.tenants), tuple(self.declared))
        recent = time.monotonic() - self.state.checked_at < RECHECK
        if self.state.settled and fingerprint == self.state.fingerprint and recent:
            return IDLE_DELAY
        try:
            with reporting.RECONCILE_SECONDS.labels(kind=KIND).time():
                verdict = self._reconcile()
        except directory.ServerConnecting:
            return ACTIVE_DELAY  # just started: its servers are being reached
        except errors.TenantDBError as exc:
            reporting.RECONCILE_ERRORS.labels(kind=KIND, reason=exc.reason).inc()
            try:
                self._problem(exc)
            except kube.ApiError as api_error:
                self.logger.warning("%s; status write failed: %s", exc, api_error)
            if not exc.permanent:
                return self.rt.settings.watch.retry_delay
            verdict = None
        except kube.ApiError as exc:
            self.logger.warning("status write failed: %s", exc)
            return self.rt.settings.watch.retry_delay
        if verdict is not None:
            self._announce(verdict)
        if self.findings:
            message = "; ".join(self.findings)
            kopf.warn(self.live_body, reason=Reason.SHARED_TABLES_SECURED, message=message)
        running = verdict is not None and verdict.phase is api.Phase.RUNNING
        self.state.fingerprint, self.state.checked_at = fingerprint, time.monotonic()
        self.state.settled = not running
        return ACTIVE_DELAY if running else IDLE_DELAY

    def _reconcile(self) -> planning.Verdict | None:
        servers, missing = self.rt.servers.hosting(self.namespace, self.servers)
        return fleet.reconcile(
            servers,
            self._request(),
            self.rt.settings.instance,
            self._write,
            self.stop,
            STATUS_INTERVAL,
            self._observe,
            missing,
        )

    def _declared(self) -> list[planning.Declared]:
        """The namespace's Migrations as the API server has them now.

        The index may lag behind when several Migrations arrive together
        (one ``kubectl apply``); ordering must not, so a pass reads them.
        """
        objects = kube.list_custom_objects(GROUP, VERSION, self.namespace, PLURAL)
        found = (_declare_object(obj) for obj in objects)
        return [d for d in found if d is not None]

    def _observe(self, result: outcomes.Result) -> None:
        """Metrics for every tenant; what securing shared tables found (a worker thread:
        kopf's event posting needs the pass's context, so ``run`` posts them)."""
        TENANT_RESULTS.labels(outcome=result.outcome.value).inc()
        if result.outcome is outcomes.Outcome.APPLIED:
            TENANT_SECONDS.observe(result.seconds)
        self.findings.extend(result.findings)

    def _request(self) -> reconciling.Request:
        try:
            spec = api.MigrationSpec.model_validate(self.body.get("spec") or {})
        except pydantic.ValidationError as exc:
            raise migration_errors.InvalidScript(f"invalid spec: {exc}") from exc
        self.checksum = scripts.checksum(spec.up)
        status = self._status()
        token = self.annotations.get(RETRY_ANNOTATION)
        observed = status.get("observedGeneration")
        retry = (bool(token) and token != status.get("lastHandledRetry")) or (
            observed is not None and observed != self.generation
        )
        self.handled_retry = token or self.handled_retry
        finished = status.get("phase") in (api.Phase.SUCCEEDED, api.Phase.FAILED)
        return reconciling.Request(
            name=self.name,
            namespace=self.namespace,
            spec=limited(spec, self.rt.settings.migrations),
            declared=self._declared(),
            labels={t.uid: dict(t.labels) for t in self.tenants},
            retry=retry,
            accept_checksum=self.annotations.get(ACCEPT_ANNOTATION),
            dry_run_done=finished and observed == self.generation,
        )

    def _problem(self, exc: errors.TenantDBError) -> None:
        status = self._status()
        phase = api.Phase.FAILED if exc.permanent else status.get("phase") or api.Phase.PENDING
        verdict = planning.Verdict(api.Phase(phase), False, exc.reason, str(exc))
        self._write(verdict, planning.Counts(**(status.get("tenants") or {})), [])
        self._announce(verdict)

    def _write(
        self, verdict: planning.Verdict, counts: planning.Counts, failures: list[tuple[str, str]]
    ) -> None:
        """Patch status if it changed; called from worker threads too, hence the lock."""
        with self.write_lock:
            status = _status(self._status(), verdict, counts, failures, self.generation)
            status["checksum"] = self.checksum
            status["lastHandledRetry"] = self.handled_retry
            if status == self.state.written:
                return
            kube.patch_custom_status(GROUP, VERSION, self.namespace, PLURAL, self.name, status)
            if status.get("finishedAt") and not (self.state.written or {}).get("finishedAt"):
                _observe_rollout(status)
            self.state.written = status

    def _announce(self, verdict: planning.Verdict) -> None:
        """One event per change of the Ready reason."""
        if verdict.reason == self.state.announced:
            return
        self.state.announced = verdict.reason
        reporting.RECONCILES.labels(kind=KIND, outcome=verdict.phase.value).inc()
        if verdict.ready or verdict.phase in (api.Phase.RUNNING, api.Phase.AWAITING_APPROVAL):
            kopf.info(self.live_body, reason=verdict.reason, message=verdict.message)
        else:
            kopf.warn(self.live_body, reason=verdict.reason, message=verdict.message)
        self.logger.info("%s: %s", verdict.reason, verdict.message)

    def _status(self) -> dict[str, Any]:
        if self.state.written is not None:
            return self.state.written
        return dict(self.body.get("status") or {})


def _observe_rollout(status: Mapping[str, Any]) -> None:
    """A rollout ended: how long it ran (nothing if it never started, like a refusal)."""
    started, finished = status.get("startedAt"), status.get("finishedAt")
    if started and finished:
        seconds = _seconds(str(finished)) - _seconds(str(started))
        ROLLOUT_SECONDS.observe(max(seconds, 0.0))


def _seconds(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _status(
    previous: Mapping[str, Any],
    verdict: planning.Verdict,
    counts: planning.Counts,
    failures: list[tuple[str, str]],
    generation: int,
) -> dict[str, Any]:
    """The full status to write, with ``null`` for cleared fields (merge patch)."""
    ready = conditions.set_ready(
        reporting.current_conditions(previous),
        verdict.phase.value,
        "True" if verdict.ready else "False",
        verdict.reason,
        verdict.message[:32768],
        generation,
    )
    running = verdict.phase is api.Phase.RUNNING
    was_running = previous.get("phase") == api.Phase.RUNNING
    started, finished = previous.get("startedAt"), previous.get("finishedAt")
    if running and not was_running:
        started, finished = conditions.now(), None
    elif verdict.finished and (was_running or not finished):
        finished = conditions.now()
    model = api.MigrationStatus(
        observed_generation=generation,
        conditions=ready,
        phase=verdict.phase,
        tenants=api.TenantCounts(
            total=counts.total, applied=counts.applied, pending=counts.pending, failed=counts.failed
        ),
        failures=[
            api.TenantFailure(tenant=name, error=error[:4096])
            for name, error in failures[:FAILURES_LISTED]
        ],
        retrying=[
            api.TenantWaiting(tenant=name, reason=reason[:4096])
            for name, reason in counts.retrying[:FAILURES_LISTED]
        ],
        started_at=started,
        finished_at=finished,
    )
    return {"startedAt": None, "finishedAt": None, **model.to_api()}


def catch_up(
    rt: runtime.Runtime,
    server: core_commands.Server,
    namespace: str,
    tenant_uid: str,
    labels: Mapping[str, str],
    logger: kopf.Logger,
    known: Iterable[planning.Declared] | None = None,
    shared: bool = False,
) -> int | None:
    """Apply every earlier Migration of the namespace this tenant lacks; return its version.

    In version order: every approved Migration that is not a dry run, not
    rolled back and whose ``tenantSelector`` matches ``labels``, stopping
    before one that awaits approval or is halted. Returns the tenant's
    highest applied version (None if none). Raises ``TenantDBError``s:
    ``TenantBusy``/``Waiting`` (not permanent: retry soon), ``HeldBack``
    (retry: a halted or invalid Migration the tenant lacks stops it),
    ``TenantFailed`` (permanent, with the database's message), and
    ``kube.ApiError`` when Migrations cannot be listed.

    ``known`` is the namespace's Migrations as ``VERSIONS`` keeps them. When it says
    there is nothing to apply (no Migration for this tenant, every one of
    them in its ledger already, or a ``shared`` tenant, which has its
    space's versions), no Migration is listed; otherwise they are, so that
    what runs is what the API server holds now, in its order.
    """
    indexed = None if known is None else list(known)
    if indexed is not None and _nothing_to_apply(server, tenant_uid, indexed, labels, shared):
        held_by = planning.holding_back(planning.owners(indexed), labels)
        return commands.catch_up(server, [], tenant_uid, rt.settings.instance, held_by=held_by)
    objects = kube.list_custom_objects(GROUP, VERSION, namespace, PLURAL)
    specs: dict[str, api.MigrationSpec] = {}
    declared: list[planning.Declared] = []
    for obj in objects:
        found = _parse_object(obj)
        if found is not None:
            item, spec = found
            declared.append(item)
            specs[item.name] = spec
    owners = planning.owners(declared)
    plan = planning.catch_up_plan(owners, labels)
    limits = rt.settings.migrations
    changes = [scripts.from_spec(d.name, limited(specs[d.name], limits)) for d in plan]
    held_by = planning.holding_back(owners, labels)
    try:
        version = commands.catch_up(
            server, changes, tenant_uid, rt.settings.instance, held_by=held_by
        )
    except migration_errors.InvalidScript as exc:
        raise migration_errors.HeldBack(f"{exc}; this tenant catches up once it is fixed") from exc
    logger.info("tenant at migration version %s (%d migration(s) apply)", version, len(changes))
    return version


def _nothing_to_apply(
    server: core_commands.Server,
    tenant_uid: str,
    known: list[planning.Declared],
    labels: Mapping[str, str],
    shared: bool,
) -> bool:
    """Whether catching up would apply nothing, by the index and one ledger query."""
    if shared:
        return True
    plan = planning.catch_up_plan(planning.owners(known), labels)
    if any(d.scope is not api.Scope.TENANT for d in plan):
        return False
    return commands.has_applied(server, tenant_uid, {d.version for d in plan})


def limited(spec: api.MigrationSpec, limits: settings_.MigrationSettings) -> api.MigrationSpec:
    """The spec with its timeouts within the operator's caps (``0s``, no timeout, included)."""
    return spec.model_copy(
        update={
            "lock_timeout": settings_.capped(spec.lock_timeout, limits.max_lock_timeout),
            "statement_timeout": settings_.capped(
                spec.statement_timeout, limits.max_statement_timeout
            ),
        }
    )


def tenant_version(server: core_commands.Server, tenant_uid: str) -> int | None:
    """The highest migration version applied to a tenant, from its server's ledger."""
    return commands.tenant_version(server, tenant_uid, api.Scope.TENANT)


def declared_versions(namespace: str) -> dict[int, str]:
    """The scope of every Migration version the namespace defines (what a restored
    archive may be at: a version none defines could never be rolled back or built on)."""
    objects = kube.list_custom_objects(GROUP, VERSION, namespace, PLURAL)
    declared = (_declare_object(obj) for obj in objects)
    return {d.version: d.scope.value for d in declared if d is not None}


def known_scripts(namespace: str) -> list[scripts.Script]:
    """The script of every version the namespace's Migrations define (one per version, its
    owner's), for validation and reset to read the tenants' history against."""
    objects = kube.list_custom_objects(GROUP, VERSION, namespace, PLURAL)
    parsed = [found for found in map(_parse_object, objects) if found is not None]
    specs = {item.name: spec for item, spec in parsed}
    return [
        scripts.from_spec(d.name, specs[d.name]) for d in planning.owners([i for i, _ in parsed])
    ]
