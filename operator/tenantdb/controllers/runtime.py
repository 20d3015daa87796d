"""What every handler needs at run time, built once at operator start-up.

kopf hands ``memo`` to every handler; ``Runtime`` is what we keep in it:
the settings and the database server (pool, control and shared schema).
Built in the startup handler, closed in the cleanup handler, never at
import time.

The runtime is connected in the background, after kopf has begun watching.
Every object's handlers get the operator's memo itself (``SharedMemo``); the
startup handler puts one ``Slot`` in it before any object is seen, and the
runtime is set on the slot once connected.
"""

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf

from tenantdb import settings as settings_
from tenantdb.controllers import directory as directory_
from tenantdb.controllers import jobs as jobs_
from tenantdb.controllers import leadership as leadership_
from tenantdb.core import commands, connecting, errors, naming, placement

_LOG = logging.getLogger(__name__)
REACH_TIMEOUT = 10
"""Seconds the first connection of a start-up may take."""
STARTING_DELAY = 5.0
"""Seconds before a handler that found no runtime (still connecting) runs again."""
SETTLE_WAIT = 60.0
"""Seconds a handler waits at most for the operator's first start-up attempt to end."""


@dataclass
class Runtime:
    """Shared state of one operator process."""

    settings: settings_.Settings
    server: commands.Server
    """The operator's own server (``default``), which holds the placement directory."""
    servers: directory_.Directory = field(init=False)
    """Every server tenants live on, the operator's own included."""
    privileges: commands.Privileges | None = None
    """What the operator's database role may do, read at start-up."""
    last_verified: dict[str, float] = field(default_factory=dict)
    """Monotonic time of each tenant's last isolation check, by UID."""
    jobs: jobs_.Jobs = field(default_factory=lambda: jobs_.Jobs(2))
    """Backups, restores and verifications in flight (``settings.backups.concurrency``)."""
    leadership: leadership_.Leadership = field(
        default_factory=lambda: leadership_.Leadership(settings_.PeeringSettings(), None)
    )
    """Whether this replica is the active one, for the background loops kopf does not pause."""

    @classmethod
    def start(cls, settings: settings_.Settings) -> "Runtime":
        """Reach the server, open the pool, check the operator role's privileges, and make
        sure the control and shared schemas are current.

        A missing privilege is logged with the statement that grants it; one
        without which nothing can be served (CREATEROLE, CREATE on the
        database) stops the start with ``InsufficientPrivilege``.
        """
        server = commands.open_server(settings.database, "tenantdb-operator")
        try:
            connecting.reach(server.url, REACH_TIMEOUT)
            privileges = commands.inspect_privileges(server)
            for line in privileges.missing():
                _LOG.warning("the operator's database role %s lacks %s", privileges.role, line)
            for line in privileges.exposures():
                _LOG.warning("%s", line)
            refuse_unusable(privileges)
            commands.prepare(server)
            with connecting.connection(server.pool) as conn:
                placement.adopt_local(conn, server.control_schema)
        except Exception:
            server.close()
            raise
        return cls(
            settings=settings,
            server=server,
            privileges=privileges,
            jobs=jobs_.Jobs(settings.backups.concurrency, settings.backups.namespace_concurrency),
            leadership=leadership_.Leadership(settings.peering, settings.watch.namespace),
        )

    def __post_init__(self) -> None:
        database = self.settings.database
        endpoint = connecting.public_parameters(database.url, database.public_host)
        self.servers = directory_.Directory(self.server, endpoint, self.privileges)

    def require(self, isolation: str) -> None:
        """Refuse a tenant this operator's database role cannot serve."""
        if self.privileges is not None:
            self.privileges.require(isolation)

    @property
    def pool(self) -> connecting.Pool:
        """The operator's connection pool."""
        return self.server.pool

    @property
    def control_schema(self) -> naming.Identifier:
        """Schema of the registry and the ledgers."""
        return self.server.control_schema

    def close(self) -> None:
        """Stop taking jobs, close the pool's connections and the idle tenant sessions."""
        self.jobs.close()
        self.servers.close()


def refuse_unusable(privileges: commands.Privileges) -> None:
    """Refuse a server on which the operator's role can serve no tenant at all."""
    if privileges.superuser or (privileges.createrole and privileges.create_in_database):
        return
    raise errors.InsufficientPrivilege(
        f"the operator's database role {privileges.role} cannot serve any tenant; it lacks "
        + "; ".join(privileges.missing())
    )


class SharedMemo(kopf.Memo):
    """The operator's memo, given as it is to every object's handlers.

    kopf gives each object it sees a shallow copy of the operator's memo, kept for
    the object's life: a dict of every key set at start-up, some 500 bytes for each
    of 10,000 Tenants. Nothing here is kept per object, so one memo serves all."""

    def __copy__(self) -> "SharedMemo":
        return self


class Slot:
    """Where the runtime is once connected; the same object in every object's memo."""

    KEY = "runtime"

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.settled = threading.Event()
        """Set once the first start-up attempt has ended, connected or not."""

    def publish(self, started: "Runtime | None") -> None:
        """End an attempt: keep the runtime it started (``None`` if it failed)."""
        if started is not None:
            self.runtime = started
        self.settled.set()

    @classmethod
    def install(cls, memo: Any) -> "Slot":
        """Put an empty slot in the operator's memo (the startup handler, before watching)."""
        slot = cls()
        memo[cls.KEY] = slot
        return slot


def current(memo: Any) -> Runtime | None:
    """The runtime, or None while the operator connects (or if it never started)."""
    slot = memo.get(Slot.KEY)
    return slot.runtime if isinstance(slot, Slot) else None


def of(memo: Any) -> Runtime:
    """The runtime, for a handler; a temporary error (retried) while the operator connects.

    Waits for the first start-up attempt, so that the handlers kopf runs on its
    first listing find the runtime and the caches it seeds instead of writing
    that they wait (a bounded block of a handler thread, once per process)."""
    slot = memo.get(Slot.KEY)
    if isinstance(slot, Slot):
        slot.settled.wait(SETTLE_WAIT)
    runtime = current(memo)
    if runtime is None:
        raise kopf.TemporaryError(
            "the operator is not connected to its database yet (see its readiness)",
            delay=STARTING_DELAY,
        )
    return runtime


async def stop_task(memo: Any, key: str) -> None:
    """Cancel the background task a startup handler kept in ``memo[key]`` and wait for it."""
    task = memo.get(key)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
