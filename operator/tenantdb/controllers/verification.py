"""Periodic isolation verification: one loop over every tenant, not a timer per tenant.

A kopf timer per Tenant is an asyncio task per Tenant for the operator's
whole life, and memory that grows with every tenant. Instead an index keeps
what the loop needs of each Tenant (a few strings, from the watch stream),
and one task wakes every ``verify_tick`` seconds, picks the tenants due (never
verified first, then the longest ago) within a budget that spreads one
``verify_interval`` of work evenly over its ticks, and verifies them on a
worker thread: version from the ledger, isolation from the catalogs, drift
repaired and reported. It writes a Tenant's status only when the version or
``IsolationVerified`` changed, with the object's ``resourceVersion`` as a
precondition so that it never overwrites what a reconcile wrote meanwhile.
"""

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from tenantdb.api import API_VERSION, GROUP, VERSION, conditions
from tenantdb.api import tenants as api
from tenantdb.controllers import (
    caches,
    credentials,
    directory,
    kube,
    migrations,
    reporting,
    runtime,
    tenants,
)
from tenantdb.core import commands, errors

logger = logging.getLogger("tenantdb.verification")

STARTING = 1.0
"""Seconds between two looks for the runtime while the operator starts."""
PHASES = frozenset({api.Phase.READY.value, api.Phase.SUSPENDED.value})
"""Only provisioned tenants are verified."""
TASK = "verification"
"""The loop's task, in kopf's memo."""


@dataclass(frozen=True)
class Target:
    """One Tenant as the loop needs it: who, and what its status says now."""

    uid: str
    name: str
    namespace: str
    phase: str | None
    version: int | None
    isolation: tuple[str, str] | None
    """``IsolationVerified``'s status and message, if set."""
    server: str = "default"
    """The server the tenant lives on."""


def target(body: Mapping[str, Any]) -> tuple[str, Target]:
    """A Tenant as the loop needs it, every one under one key."""
    meta, status = body["metadata"], body.get("status") or {}
    isolation = next(
        (
            (caches.text(c.get("status")), caches.text(c.get("message") or ""))
            for c in status.get("conditions") or []
            if c.get("type") == conditions.ConditionType.ISOLATION_VERIFIED
        ),
        None,
    )
    found = Target(
        caches.text(meta["uid"]),
        caches.text(meta["name"]),
        caches.text(meta.get("namespace") or ""),
        caches.text_or_none(status.get("phase")),
        status.get("version"),
        isolation,
        caches.text(directory.located(status)),
    )
    return "", found


TARGETS: caches.Cache[Target] = caches.Cache(tenants.PLURAL, target)


def due(
    targets: Iterable[Target],
    last_verified: Mapping[str, float],
    now: float,
    interval: float,
    tick: float,
) -> list[Target]:
    """The tenants to verify this tick, never verified first, then the longest ago.

    At most a ``tick / interval`` share of the provisioned tenants, so the
    work of one interval is spread over its ticks instead of arriving at once
    (after a restart, every tenant is due). Pure.
    """
    live = [t for t in targets if t.phase in PHASES]
    never = -math.inf
    waiting = [t for t in live if now - last_verified.get(t.uid, never) >= interval]
    waiting.sort(key=lambda t: last_verified.get(t.uid, never))
    budget = math.ceil(len(live) * tick / interval) if interval > 0 else len(live)
    return waiting[: max(budget, 1)]


@kopf.on.startup()
async def start(memo: Any, **_: Any) -> None:
    """Start the loop on kopf's event loop."""
    memo[TASK] = asyncio.create_task(_loop(memo), name="tenantdb-verification")


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    """Stop the loop (a verification running on its thread finishes first)."""
    await runtime.stop_task(memo, TASK)


async def _loop(memo: Any) -> None:
    while (rt := runtime.current(memo)) is None:
        await asyncio.sleep(STARTING)
    watch = rt.settings.watch
    while True:
        await asyncio.sleep(watch.verify_tick)
        if not await asyncio.to_thread(rt.leadership.active):
            continue
        targets = TARGETS.get("")
        _forget_gone(rt.last_verified, targets)
        now = time.monotonic()
        chosen = due(targets, rt.last_verified, now, watch.verify_interval, watch.verify_tick)
        try:
            await asyncio.to_thread(_verify_all, rt, chosen)
        except Exception:
            # A dead loop would stop verifying every tenant in silence: log, keep going.
            logger.exception("isolation verification crashed")


def _forget_gone(last_verified: dict[str, float], targets: list[Target]) -> None:
    live = {t.uid for t in targets}
    for uid in [uid for uid in last_verified if uid not in live]:
        del last_verified[uid]


def _verify_all(rt: runtime.Runtime, chosen: list[Target]) -> None:
    for target in chosen:
        rt.last_verified[target.uid] = time.monotonic()
        try:
            verify(rt, target)
        except (errors.TenantDBError, kube.ApiError, tenants.InvalidSpec) as exc:
            logger.warning("%s/%s: isolation check failed: %s", target.namespace, target.name, exc)
            if isinstance(exc, kube.ApiError) and kube.is_conflict_or_unavailable(exc):
                rt.last_verified.pop(target.uid, None)  # again next tick


def verify(rt: runtime.Runtime, target: Target) -> None:
    """Check one tenant; repair drift and say so; write status only if it changed."""
    server = rt.servers.server(target.server)
    version = migrations.tenant_version(server, target.uid)  # later rollouts move it
    findings = commands.verify_isolation(server, target.uid, target.name, rt.settings.plans)
    obj: dict[str, Any] | None = None
    if findings:
        obj = _read(target)
        if obj is None:
            return
        try:
            isolation = _repair(rt, server, target, obj, findings)
        except errors.TenantGone:
            return  # deleted since it was read: its deletion removes the rest
    else:
        isolation = ("True", conditions.Reason.VERIFIED, "isolation verified")
    if version == target.version and target.isolation == (isolation[0], isolation[2]):
        return
    obj = obj or _read(target)
    if obj is not None:
        _write(target, obj, version, isolation)


def _repair(
    rt: runtime.Runtime,
    server: commands.Server,
    target: Target,
    obj: dict[str, Any],
    findings: list[str],
) -> tuple[conditions.ConditionStatus, str, str]:
    found = "; ".join(findings)
    meta = obj["metadata"]
    request = tenants.request_for(rt, tenants.parse_spec(obj.get("spec") or {}), meta)
    owner = dict(kopf.build_owner_reference(cast(kopf.Body, obj)))  # reads only .get()
    stored = credentials.StoredPassword(target.namespace, target.name, owner)
    commands.repair_isolation(server, request, stored)
    remaining = commands.verify_isolation(server, target.uid, target.name, rt.settings.plans)
    logger.warning("%s/%s: isolation drift: %s", target.namespace, target.name, found)
    _warn(target, conditions.Reason.ISOLATION_DRIFT, f"drift found: {found}")
    if remaining:
        message = "drift not repaired: " + "; ".join(remaining)
        return ("False", conditions.Reason.ISOLATION_DRIFT, message)
    return ("True", conditions.Reason.REPAIRED, f"repaired: {found}")


def _read(target: Target) -> dict[str, Any] | None:
    """The Tenant now, if it is still the same one and not being deleted (its deletion
    may have dropped what the check found missing)."""
    obj = kube.read_custom_object(GROUP, VERSION, target.namespace, tenants.PLURAL, target.name)
    if obj is None or obj["metadata"].get("uid") != target.uid:
        return None
    if obj["metadata"].get("deletionTimestamp"):
        return None
    return obj


def _write(
    target: Target,
    obj: dict[str, Any],
    version: int | None,
    isolation: tuple[conditions.ConditionStatus, str, str],
) -> None:
    status = dict(obj.get("status") or {})
    # The generation the status speaks of: a spec not reconciled yet is not observed here.
    generation = int(status.get("observedGeneration") or obj["metadata"].get("generation") or 0)
    patch = kopf.Patch()
    patch.status["version"] = version
    tenants.write_isolation(patch, status, generation, *isolation)
    reporting.drop_unchanged(patch, status)
    if "status" in patch:
        kube.patch_custom_status(
            GROUP,
            VERSION,
            target.namespace,
            tenants.PLURAL,
            target.name,
            dict(patch["status"]),
            resource_version=obj["metadata"]["resourceVersion"],
        )


def _warn(target: Target, reason: str, message: str) -> None:
    involved = {
        "apiVersion": API_VERSION,
        "kind": tenants.KIND,
        "namespace": target.namespace,
        "name": target.name,
        "uid": target.uid,
    }
    try:
        kube.post_event(involved, "Warning", reason, message)
    except kube.ApiError as exc:
        logger.warning("could not post the isolation event: %s", exc.reason)
