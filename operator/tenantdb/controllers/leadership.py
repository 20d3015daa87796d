"""Whether this replica is the active one, for the background work kopf does not pause.

kopf pauses a standby's watches, handlers and daemons, but the work started at
start-up is ours: the statement watchdog, the usage survey and the
verification loop would run in every replica, doubling the load on the
database and writing the same statuses twice. Each asks ``Leadership.active``
before a round. It reads the peering object kopf keeps (at most every
``RECHECK`` seconds) and applies kopf's own rule: a replica works unless a live
peer has a higher priority, or a live peer besides itself has the same one.
"""

import logging
import math
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tenantdb import settings as settings_
from tenantdb.api import peering
from tenantdb.controllers import kube

logger = logging.getLogger("tenantdb.leadership")

RECHECK = 2.0
"""Seconds an answer is reused: background rounds come every second or more."""


def active_among(records: Mapping[str, Any], priority: int, now: datetime) -> bool:
    """kopf's rule over a peering object's ``status`` (identity -> priority, lastseen,
    lifetime). This replica's own record is the live one with its priority (priorities
    differ between replicas, ``settings.PeeringSettings``), so two records with it mean
    a tie, in which kopf pauses every replica."""
    live = [record for record in records.values() if _alive(record, now)]
    higher = any(int(record.get("priority", 0)) > priority for record in live)
    same = sum(1 for record in live if int(record.get("priority", 0)) == priority)
    return not higher and same <= 1


def _alive(record: Mapping[str, Any], now: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(str(record["lastseen"]))
        lifetime = timedelta(seconds=int(record.get("lifetime", 60)))
    except (KeyError, ValueError, TypeError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return seen + lifetime > now


class Leadership:
    """The answer for one replica, cached for ``RECHECK`` seconds (thread-safe)."""

    def __init__(self, config: settings_.PeeringSettings, namespace: str | None) -> None:
        self.config = config
        self.namespace = namespace.split(",")[0].strip() if namespace else None
        """Where the ``KopfPeering`` is (the first watched namespace's: priorities are
        the same in each); ``None``: the ``ClusterKopfPeering``."""
        self._lock = threading.Lock()
        self._answer = True
        self._checked = -math.inf

    def active(self) -> bool:
        """Whether to do a round now. Standalone: always. An unreadable peering object
        keeps the last answer (kopf cannot read it either, and keeps its state)."""
        if self.config.name is None:
            return True
        with self._lock:
            if time.monotonic() - self._checked < RECHECK:
                return self._answer
            try:
                found = kube.read_peering(
                    peering.GROUP, peering.VERSION, self.config.name, self.namespace
                )
            except kube.ApiError as exc:
                logger.warning(
                    "peering %s unreadable, keeping the last answer: %s", self.config.name, exc
                )
                return self._answer
            records = (found or {}).get("status") or {}
            answer = active_among(records, self.config.priority, datetime.now(UTC))
            if answer != self._answer:
                logger.info("background work %s", "resumed" if answer else "paused (standby)")
            self._answer, self._checked = answer, time.monotonic()
            return answer
