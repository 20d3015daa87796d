"""Which role, pool and database every piece of SQL runs on, and why.

The boundary between the operator and what tenants and namespace users
write is the *session user* of a connection, never ``SET ROLE``: a session
can always return to its session user (``RESET ROLE``, ``SET SESSION
AUTHORIZATION DEFAULT``, ``set_config('role', ...)``), so SQL someone else
wrote must only ever run on a session whose session user has no more rights
than they have.

=================================  ==========================  =============================
work                               session user                connection
=================================  ==========================  =============================
registry, ledger, locks, shared    the operator's role         ``Server.pool`` on ``operator_url``:
spaces, catalogs, verification,                                ``search_path=pg_catalog,
dropping tenants                                               pg_temp``, bounded
                                                               ``lock_timeout``
a tenant's own roles, schema and   the operator's role; the    ``Server.pool``, in the
their settings (``CREATE ROLE``,   current user is the         provisioning transaction,
``ALTER ROLE``, ``GRANT``), their  tenant's creator role       through the creator's
join of the connect group                                      ``SECURITY DEFINER`` function
(``connect_group``)                                            (``creators``)
a ``database`` tenant's database   the operator's role         ``operator_connection`` (same
(public schema, grants)                                        pinning)
Migration SQL, tenant scope, and   the tenant's owner role     ``TenantSessions``
its marker row (same transaction)
Migration SQL, shared scope        the shared owner role of    ``TenantSessions``
                                   the Migration's namespace
seeders, a shared tenant's rows    the owner role, then        ``TenantSessions``
removed on deletion                ``SET LOCAL ROLE`` login
placement directory (which server  the operator's role         the operator's own server's
each tenant lives on)                                          ``Server.pool`` only
                                                               (``controllers/directory``)
=================================  ==========================  =============================

Each server tenants live on (the operator's own, and each ``DatabaseServer``)
has a ``Server`` of its own: its pool, its tenant sessions, its control
schema with its tenants' registry rows and ledgers. Work on a tenant runs on
its server's (``controllers/directory.Directory.server``), never another's.

No tenant-written statement ever reaches an operator connection, so nothing
a tenant can leave behind (session settings, temporary objects, prepared
statements) can reach the operator's own work; and with ``search_path``
pinned to ``pg_catalog, pg_temp``, no object a tenant creates is ever resolved by an
operator query (the operator qualifies its own schemas explicitly).

Owner roles log in with a password derived from the operator's credentials
key (``passwords.role_password``), which only the operator holds.
"""

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo, sql

from tenantdb.core import connecting, errors, passwords

Connection = psycopg.Connection[Any]

TENANT_APPLICATION = "tenantdb-tenant"
"""``application_name`` of sessions as a tenant's roles (seen in ``pg_stat_activity``)."""
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3
"""TCP keepalives, in seconds and probes, on both ends of every operator and tenant
session: a peer that vanished without closing (a lost node, a partition) is noticed
within about a minute, not the kernel's two hours. On the server's end this ends the
session of an operator that is gone, and with it the locks of its open transaction
(a tenant's lock, the bootstrap lock), which would otherwise hold up the replica
that took over."""
SERVER_KEEPALIVE = (
    f"-c tcp_keepalives_idle={KEEPALIVE_IDLE} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL}"
    f" -c tcp_keepalives_count={KEEPALIVE_COUNT}"
)
"""The server's end of the keepalives, as startup options (``DISCARD ALL`` keeps them)."""

TENANT_OPTIONS = f"-c search_path=pg_catalog,pg_temp {SERVER_KEEPALIVE}"
"""Tenant sessions start resolving nothing a tenant made, whatever ``search_path`` the
owner role has given itself (``ALTER ROLE CURRENT_USER SET``): the operator's own
statements on them (marker probes) run before any scope is entered, and a startup
option outlives ``DISCARD ALL``. The tenant's SQL runs under the ``search_path`` its
scope sets (``SET LOCAL``)."""
CONNECT_TIMEOUT = 10
"""Seconds a new connection may take."""


def operator_url(url: str, lock_wait: float) -> str:
    """``url`` with the operator's session pinning added to its ``options``.

    ``search_path`` is ``pg_catalog``, then ``pg_temp`` (named, so that it is
    searched last rather than first for relations), and lock waits end after ``lock_wait``
    seconds with an error the callers treat as "busy, retry". Keepalives
    (``KEEPALIVE_IDLE``) for libpq's end unless the URL sets its own (tenant
    sessions inherit them), and ``SERVER_KEEPALIVE`` for the server's.
    """
    given = conninfo.conninfo_to_dict(url)
    existing = str(given.get("options") or "")
    pinning = (
        f"-c search_path=pg_catalog,pg_temp -c lock_timeout={round(lock_wait * 1000)}"
        f" {SERVER_KEEPALIVE}"
    )
    client = {
        "keepalives": "1",
        "keepalives_idle": str(KEEPALIVE_IDLE),
        "keepalives_interval": str(KEEPALIVE_INTERVAL),
        "keepalives_count": str(KEEPALIVE_COUNT),
    }
    client = {key: value for key, value in client.items() if key not in given}
    return conninfo.make_conninfo(url, options=f"{existing} {pinning}".strip(), **client)


@contextmanager
def operator_connection(operator_conninfo: str, database: str) -> Iterator[Connection]:
    """A one-off operator session in another database (a ``database`` tenant's).

    ``operator_conninfo`` is the pinned ``operator_url``, so the pinning holds.
    """
    url = conninfo.make_conninfo(operator_conninfo, dbname=database)
    with (
        connecting.translated_errors(),
        psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn,
    ):
        yield conn


@dataclass
class TenantSessions:
    """Connections whose session user is a tenant's owner role, reused per role.

    Not a ``psycopg_pool`` per role: there are thousands of roles, each
    needing a connection now and then, and together they may keep only a
    few idle (``idle_max``, least recently used closed first). A login the
    server refuses for its password (a new credentials key, a role made by
    an older version) is repaired once by setting the derived password
    again, from the operator's pool.
    """

    server_url: str = field(repr=False)
    """The operator's conninfo: host, port and TLS settings are taken from it."""
    key: bytes = field(repr=False)
    idle_max: int = 16
    idle_seconds: float = 60.0
    _idle: OrderedDict[tuple[str, str], list[tuple[Connection, float]]] = field(
        default_factory=OrderedDict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _opened: "weakref.WeakKeyDictionary[Connection, float]" = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    """When each connection logged in."""
    _forgotten: dict[str, float] = field(default_factory=dict, repr=False)
    """Roles whose sessions opened before this time are never taken back (``forget``)."""

    @contextmanager
    def session(self, role: str, database: str) -> Iterator[Connection]:
        """An autocommit connection to ``database`` as ``role``, back to the cache afterwards.

        The caller runs what it must in explicit transactions; whatever it
        leaves behind is discarded (``DISCARD ALL``) before the next use.
        """
        key = (role, database)
        conn = self._take(key) or self._connect(role, database)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self._give_back(key, conn)

    def password_accepted(self, role: str, database: str) -> bool:
        """Whether the server still takes the derived password on a fresh login.

        Every role may change its own password, so a Migration can give its
        author a login as the owner; the isolation check asks this, and
        ``reset_password`` takes the login back.
        """
        try:
            self._open(self._url(role, database)).close()
        except psycopg.OperationalError as exc:
            if _password_refused(exc):
                return False
            raise _unavailable(role, database, exc) from exc
        return True

    def reset_password(self, role: str) -> None:
        """Set the derived password again (a role that changed its own loses it)."""
        self._set_password(role, passwords.role_password(self.key, role))

    def forget(self, *roles: str) -> None:
        """Close the roles' idle sessions, and those in use now when they come back.

        A session starts with its role's settings (``ALTER ROLE ... SET``, which
        every role may do to itself) and ``DISCARD ALL`` returns it to those
        start-up values, not to the role's current ones: once the settings are
        repaired, only sessions opened afterwards have the repaired ones.
        """
        now = time.monotonic()
        with self._lock:
            for role in roles:
                self._forgotten[role] = now
            stale = [key for key in self._idle if key[0] in roles]
            closing = [conn for key in stale for conn, _ in self._idle.pop(key)]
        for conn in closing:
            conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn, _ in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def _take(self, key: tuple[str, str]) -> Connection | None:
        now = time.monotonic()
        with self._lock:
            conns = self._idle.get(key, [])
            while conns:
                conn, since = conns.pop()
                if not conn.closed and now - since < self.idle_seconds:
                    return conn
                conn.close()
            self._idle.pop(key, None)
        return None

    def _give_back(self, key: tuple[str, str], conn: Connection) -> None:
        if conn.closed or conn.broken:
            return
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            conn.execute("DISCARD ALL")
        except psycopg.Error:
            conn.close()
            return
        surplus: list[Connection] = []
        with self._lock:
            forgotten = self._forgotten.get(key[0])
            if forgotten is not None and self._opened.get(conn, forgotten) <= forgotten:
                surplus.append(conn)  # opened with settings since repaired
            else:
                self._idle.setdefault(key, []).append((conn, time.monotonic()))
                self._idle.move_to_end(key)
            while sum(len(c) for c in self._idle.values()) > self.idle_max:
                oldest = next(iter(self._idle))
                surplus.append(self._idle[oldest].pop(0)[0])
                if not self._idle[oldest]:
                    del self._idle[oldest]
        for old in surplus:
            old.close()

    def _url(self, role: str, database: str) -> str:
        password = passwords.role_password(self.key, role)
        return conninfo.make_conninfo(
            self.server_url, user=role, password=password, dbname=database, options=TENANT_OPTIONS
        )

    def _connect(self, role: str, database: str) -> Connection:
        opened = time.monotonic()
        conn = self._login(role, database)
        with self._lock:
            self._opened[conn] = opened
        return conn

    def _login(self, role: str, database: str) -> Connection:
        url = self._url(role, database)
        password = passwords.role_password(self.key, role)
        try:
            return self._open(url)
        except psycopg.OperationalError as exc:
            if not _password_refused(exc):
                raise _unavailable(role, database, exc) from exc
        self._set_password(role, password)
        try:
            return self._open(url)
        except psycopg.OperationalError as exc:
            raise _unavailable(role, database, exc) from exc

    @staticmethod
    def _open(url: str) -> Connection:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=TENANT_APPLICATION,
            prepare_threshold=None,
        )

    def _set_password(self, role: str, password: str) -> None:
        verifier = passwords.scram_verifier(password, iterations=passwords.ROLE_SCRAM_ITERATIONS)
        statement = sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier)
        )
        database = str(conninfo.conninfo_to_dict(self.server_url).get("dbname") or "postgres")
        try:
            with operator_connection(self.server_url, database) as conn:
                conn.execute(statement)
        except errors.DatabaseError as exc:
            raise errors.DatabaseError(
                f"cannot log in as {role}: {exc}", sqlstate=exc.sqlstate
            ) from exc


def _password_refused(exc: psycopg.OperationalError) -> bool:
    """The server refused the password (or the role may not log in yet)."""
    text = str(exc)
    return exc.sqlstate in ("28P01", "28000") or "password authentication failed" in text


def _unavailable(role: str, database: str, exc: psycopg.Error) -> errors.DatabaseUnavailable:
    return errors.DatabaseUnavailable(
        f"cannot log in as {role} to database {database}: {connecting.describe(exc)}"
    )
