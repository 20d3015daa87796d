"""What the operator keeps in memory of other objects than the one a handler serves.

A Migration's rollout needs its namespace's Tenants and Migrations, a Tenant's
reconcile the namespace's Migrations and the declared DatabaseServers, the
verification loop every Tenant. Each ``Cache`` keeps one small record per
object, projected from its body. It is filled once by a paged list before any
handler runs (the ``Connector``: handlers wait for the runtime it publishes
after ``seed``) and kept by the kinds' watch events from then on.

Not kopf's indexes: with those, kopf makes every object's worker wait until
every object of every indexed kind has been indexed, and re-arms that wait for
a watch started later (a CRD found again after an API server restart), so a
bound on kopf's workers (``settings.queueing.worker_limit``, which keeps a
burst from holding a worker per object) can stall for good.

The handlers here only read the body, so they are ``async def`` and run on the
event loop (see ``census``); readers are handler threads, hence the lock.
"""

import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import kopf

from tenantdb.api import GROUP, VERSION, migrations, servers, tenants
from tenantdb.controllers import kube

V = TypeVar("V")
Projection = Callable[[Mapping[str, Any]], tuple[str, V] | None]
"""A body's key (a namespace, or ``""`` for one group) and record; ``None`` keeps none."""
KINDS = (tenants.TENANT, migrations.MIGRATION, servers.DATABASE_SERVER)
"""The kinds cached; a cluster-scoped one is listed cluster-wide even when the
operator watches one namespace."""


def text(value: object) -> str:
    """A record's string, shared with every record that holds the same one: each watch
    event decodes fresh copies of a Tenant's uid, name, namespace and phase, and at
    10,000 Tenants the caches would otherwise keep tens of thousands of duplicates."""
    return sys.intern(str(value))


def text_or_none(value: object) -> str | None:
    """``text`` of a field that may be absent (a status not written yet)."""
    return None if value is None else text(value)


class Cache(Generic[V]):
    """One record per object of one kind, by uid, grouped by key."""

    def __init__(self, plural: str, project: Projection[V]) -> None:
        self.plural, self._project = plural, project
        self._lock = threading.Lock()
        self._records: dict[str, tuple[str, V]] = {}
        self._touched: set[str] | None = None
        """Uids seen in events while a seed's list is read (the list may be older)."""
        self._listed: dict[str, tuple[str, V]] = {}
        """The records of a seed's list, until it ends."""
        _ALL.append(self)

    def get(self, key: str) -> list[V]:
        """The records under ``key``."""
        with self._lock:
            return [record for k, record in self._records.values() if k == key]

    def observe(self, kind: str, body: Mapping[str, Any]) -> None:
        """Keep a watch event's object (``DELETED`` forgets it)."""
        uid = text(body["metadata"]["uid"])
        projected = None if kind == "DELETED" else self._project(body)
        with self._lock:
            if self._touched is not None:
                self._touched.add(uid)
            if projected is None:
                self._records.pop(uid, None)
            else:
                self._records[uid] = projected

    def begin_seed(self) -> None:
        """Note the events that arrive from now on: they are newer than the list."""
        with self._lock:
            self._touched = set()
        self._listed = {}

    def add_listed(self, body: Mapping[str, Any]) -> None:
        """Keep one listed object's record until ``end_seed`` (the body itself is not kept)."""
        projected = self._project(body)
        if projected is not None:
            self._listed[text(body["metadata"]["uid"])] = projected

    def end_seed(self) -> None:
        """Replace the records by the list's, except those events changed meanwhile (an
        object gone from the list and from the events is gone)."""
        listed, self._listed = self._listed, {}
        with self._lock:
            touched = self._touched or set()
            kept = {uid: r for uid, r in self._records.items() if uid in touched}
            self._records = {uid: r for uid, r in listed.items() if uid not in touched} | kept
            self._touched = None

    def seed(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        """``add_listed`` each body, then ``end_seed``."""
        for body in bodies:
            self.add_listed(body)
        self.end_seed()


_ALL: list[Cache[Any]] = []


def seed(namespace: str | None) -> None:
    """Fill every cache from one paged list per kind (``kube.ApiError`` if one fails).

    Each page's bodies go to every cache of their kind before the next page is read,
    so no more than a page of decoded bodies is alive at once."""
    for kind in KINDS:
        served = [cache for cache in _ALL if cache.plural == kind.plural]
        for cache in served:
            cache.begin_seed()
        scope = None if kind.cluster_scoped else namespace
        for body in kube.list_pages(GROUP, VERSION, kind.plural, scope):
            for cache in served:
                cache.add_listed(body)
        for cache in served:
            cache.end_seed()


def _observe(plural: str, event: kopf.RawEvent, body: kopf.Body) -> None:
    kind = str(event.get("type") or "")
    for cache in _ALL:
        if cache.plural == plural:
            cache.observe(kind, body)


@kopf.on.event(GROUP, VERSION, "tenants")
async def keep_tenant(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Keep a Tenant's records."""
    _observe("tenants", event, body)


@kopf.on.event(GROUP, VERSION, "migrations")
async def keep_migration(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Keep a Migration's records."""
    _observe("migrations", event, body)


@kopf.on.event(GROUP, VERSION, "databaseservers")
async def keep_server(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Keep a DatabaseServer's records."""
    _observe("databaseservers", event, body)
