"""The PostgreSQL servers this operator holds, by name, and where each tenant lives.

One ``commands.Server`` per server (its own pool and tenant sessions), the
operator's own under ``default``, the others opened by the DatabaseServer
controller once reached and prepared. Every piece of work on a tenant asks
``server_of`` for its server, so that work on one server never waits for
another: a server that is down fails only its own tenants' work.
"""

import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from tenantdb.api import selectors
from tenantdb.api import servers as api
from tenantdb.controllers import caches
from tenantdb.core import commands, connecting, errors, naming, placement
from tenantdb.core.migrations import planning

P = ParamSpec("P")
T = TypeVar("T")
STARTING = 60.0
"""Seconds after start-up in which a server not tried yet counts as connecting, not down."""


class ServerUnavailable(errors.TenantDBError):
    """The tenant's server is not connected (unknown, unreachable, or being prepared)."""

    reason = "ServerUnavailable"
    permanent = False


class ServerConnecting(ServerUnavailable):
    """A declared server this process has not tried yet, just after start-up: wait,
    say nothing (it is most likely being reached right now)."""


def _server_name(body: Mapping[str, Any]) -> tuple[str, str]:
    return "", str(body["metadata"]["name"])


SERVERS: caches.Cache[str] = caches.Cache("databaseservers", _server_name)


def declared() -> frozenset[str]:
    """The DatabaseServers' names (listed before any handler runs, so it knows every
    server before the servers are reached)."""
    return frozenset(SERVERS.get(""))


@dataclass(frozen=True)
class Member:
    """One server and what placement and tenants' Secrets need to know of it."""

    name: str
    server: commands.Server
    endpoint: Mapping[str, str]
    """Host, port and database tenants' applications connect to (no credentials)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    capacity: api.Capacity | None = None
    unschedulable: bool = False
    fingerprint: str = field(default="", repr=False)
    """What the server was opened from (URL and host), to tell when to reopen it."""
    privileges: commands.Privileges | None = None
    """What the operator's role there may do, read when it was opened."""

    def require(self, isolation: str) -> None:
        """Refuse a tenant the operator's role on this server cannot serve."""
        if self.privileges is not None:
            self.privileges.require(isolation)

    def candidate(self) -> placement.Candidate:
        """The server's limits, for placement."""
        cap = self.capacity or api.Capacity()
        per_isolation = {
            "schema": cap.schema_tenants,
            "database": cap.database_tenants,
            "shared": cap.shared_tenants,
        }
        return placement.Candidate(self.name, cap.tenants, per_isolation)


class Directory:
    """Servers by name (thread-safe); ``default`` is always there."""

    def __init__(
        self,
        default: commands.Server,
        endpoint: Mapping[str, str],
        privileges: commands.Privileges | None = None,
    ) -> None:
        self._lock = threading.Lock()
        own = Member(api.DEFAULT, default, dict(endpoint), privileges=privileges)
        self._members: dict[str, Member] = {api.DEFAULT: own}
        self._tried: set[str] = {api.DEFAULT}
        self._started = time.monotonic()

    @property
    def default(self) -> commands.Server:
        """The operator's own server, which also holds the placement directory."""
        return self._members[api.DEFAULT].server

    def member(self, name: str | None, declared: Collection[str] = ()) -> Member:
        """The named server (None: the default), or ``ServerUnavailable``:
        ``ServerConnecting`` if it is among the ``declared`` DatabaseServers and this
        process has not tried it yet, just after start-up."""
        with self._lock:
            found = self._members.get(name or api.DEFAULT)
            untried = name not in self._tried
        if found is not None:
            return found
        starting = time.monotonic() - self._started < STARTING
        if untried and starting and name in declared:
            raise ServerConnecting(f"server {name} is connecting")
        raise ServerUnavailable(
            f"server {name} is not connected (see kubectl get databaseserver {name})"
        )

    def server(self, name: str | None, declared: Collection[str] = ()) -> commands.Server:
        """The named server's connections (None: the default)."""
        return self.member(name, declared).server

    def members(self) -> list[Member]:
        """Every connected server, the default first."""
        with self._lock:
            return sorted(self._members.values(), key=lambda m: (m.name != api.DEFAULT, m.name))

    def tried(self, name: str) -> None:
        """The DatabaseServer controller tried to reach ``name`` (whatever came of it)."""
        with self._lock:
            self._tried.add(name)

    def join(self, member: Member) -> None:
        """Add or replace a server; a replaced one's connections are closed."""
        with self._lock:
            old = self._members.get(member.name)
            self._members[member.name] = member
        if old is not None and old.server is not member.server:
            old.server.close()

    def leave(self, name: str) -> None:
        """Forget a server and close its connections (never the default)."""
        if name == api.DEFAULT:
            return
        with self._lock:
            old = self._members.pop(name, None)
        if old is not None:
            old.server.close()

    def candidates(self, selector: selectors.LabelSelector) -> list[placement.Candidate]:
        """Schedulable connected servers whose labels match (never the default)."""
        return [
            m.candidate()
            for m in self.members()
            if m.name != api.DEFAULT
            and not m.unschedulable
            and planning.matches(selector, m.labels)
        ]

    # The placement directory: on the operator's own server, as the operator's role.

    def _on_directory(
        self,
        work: Callable[Concatenate[connecting.Connection, naming.Identifier, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``work(conn, control_schema, ...)`` on the operator's own server's pool."""
        own = self.default
        with connecting.connection(own.pool) as conn:
            return work(conn, own.control_schema, *args, **kwargs)

    def located(self, uid: str) -> str | None:
        """The server a tenant was placed on (None: not placed yet)."""
        return self._on_directory(placement.located, uid)

    def place_on_default(self, tenant: placement.Tenant) -> str:
        """Where a tenant that names no server lives (the operator's own, once placed)."""
        return self._on_directory(placement.on_default, tenant)

    def claim_domain(self, tenant: placement.Tenant) -> None:
        """Hold a placed tenant's (possibly changed) domain, unique across servers."""
        self._on_directory(placement.claim_domain, tenant)

    def place(
        self, tenant: placement.Tenant, candidates: list[placement.Candidate], why: str
    ) -> Member:
        """The tenant's server, placing it among ``candidates`` if it is new."""
        return self.member(self._on_directory(placement.place, tenant, candidates, why))

    def forget(self, uid: str) -> None:
        """A deleted tenant leaves the directory."""
        self._on_directory(placement.forget, uid)

    def placed(self, server: str) -> dict[str, int]:
        """Tenants placed on ``server``, by isolation mode."""
        return self._on_directory(placement.counts, [server]).get(server, {})

    def hosted(self, server: str) -> tuple[int, list[str]]:
        """How many tenants live on ``server``, and the first few (namespace/name)."""
        return self._on_directory(placement.hosted, server)

    def hosting(
        self, namespace: str, declared: Collection[str] = ()
    ) -> tuple[dict[str, commands.Server], dict[str, str]]:
        """The connected servers a namespace's tenants live on, and why the others are not
        (``ServerConnecting`` for a declared one not tried yet: a rollout waits for it)."""
        names = self._on_directory(placement.servers_of, namespace)
        servers: dict[str, commands.Server] = {}
        missing: dict[str, str] = {}
        for name in sorted(names):
            try:
                servers[name] = self.server(name, declared)
            except ServerConnecting:
                raise
            except ServerUnavailable as exc:
                missing[name] = str(exc)
        return servers, missing

    def close(self) -> None:
        """Close every server's connections."""
        for member in self.members():
            member.server.close()


def located(status: Mapping[str, Any]) -> str:
    """The server a Tenant's status names (``default`` for tenants from before servers)."""
    return str(status.get("server") or api.DEFAULT)
