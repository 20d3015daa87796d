"""How many Tenants and Migrations are in each state: gauges counted at scrape time.

The watch events of both kinds keep one small record per object (phase,
isolation mode, a Migration's tenant counts) in memory; each scrape counts
them. Labels are bounded (phases, isolation modes, tenant states): no
series names a tenant or a Migration. Only a replica that works (peering)
watches, so a paused standby reports nothing. Nothing here writes.

The handlers here, like those of ``caches``, only read the
body, so they are ``async def`` and run on the event loop: kopf runs a sync one on its
handler threads (``execution.max_workers``), where every event of every object would
wait behind the reconciles holding them (a burst of 1,000 new Tenants: thousands of
such waits before the first finalizer is even added).
"""

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tenantdb.api import GROUP, VERSION

TENANT_STATES = ("applied", "pending", "failed")
"""The tenant counts of a Migration's status, summed in ``tenantdb_migration_tenants``."""


class Census(Collector):
    """The latest phase of every Tenant and Migration this process watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, tuple[str, str]] = {}
        self._migrations: dict[str, tuple[str, dict[str, int]]] = {}

    def tenant(self, kind: str, body: Mapping[str, Any]) -> None:
        """Record a Tenant's watch event (``DELETED`` forgets it)."""
        uid = str(body["metadata"]["uid"])
        phase = str((body.get("status") or {}).get("phase") or "Pending")
        isolation = str((body.get("spec") or {}).get("isolation") or "schema")
        with self._lock:
            if kind == "DELETED":
                self._tenants.pop(uid, None)
            else:
                self._tenants[uid] = (phase, isolation)

    def migration(self, kind: str, body: Mapping[str, Any]) -> None:
        """Record a Migration's watch event (``DELETED`` forgets it)."""
        uid = str(body["metadata"]["uid"])
        status = body.get("status") or {}
        counts = status.get("tenants") or {}
        tenants = {state: int(counts.get(state) or 0) for state in TENANT_STATES}
        with self._lock:
            if kind == "DELETED":
                self._migrations.pop(uid, None)
            else:
                self._migrations[uid] = (str(status.get("phase") or "Pending"), tenants)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            tenants = Counter(self._tenants.values())
            migrations = list(self._migrations.values())
        by_phase = GaugeMetricFamily(
            "tenantdb_tenant_objects",
            "Tenant objects by phase and isolation mode",
            labels=["phase", "isolation"],
        )
        for (phase, isolation), count in sorted(tenants.items()):
            by_phase.add_metric([phase, isolation], count)
        yield by_phase
        rollouts = GaugeMetricFamily(
            "tenantdb_migrations", "Migration objects by phase", labels=["phase"]
        )
        for phase, count in sorted(Counter(phase for phase, _ in migrations).items()):
            rollouts.add_metric([phase], count)
        yield rollouts
        progress = GaugeMetricFamily(
            "tenantdb_migration_tenants",
            "Tenants of every Migration present by state (applied, pending, failed), summed",
            labels=["state"],
        )
        for state in TENANT_STATES:
            progress.add_metric([state], sum(counts[state] for _, counts in migrations))
        yield progress


CENSUS = Census()
REGISTRY.register(CENSUS)


@kopf.on.event(GROUP, VERSION, "tenants")
async def count_tenant(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Keep the Tenant's phase and isolation for the gauges (on the event loop)."""
    CENSUS.tenant(str(event.get("type") or ""), body)


@kopf.on.event(GROUP, VERSION, "migrations")
async def count_migration(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Keep the Migration's phase and tenant counts for the gauges (on the event loop)."""
    CENSUS.migration(str(event.get("type") or ""), body)
