"""The statement watchdog against a real server, run as a role that is not a superuser.

The watchdog's role holds what production gives the operator (CREATEROLE,
CREATEDB, pg_signal_backend, pg_read_all_stats) and nothing more; graces
are tiny so the tests wait on the statements, not on the clock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import conninfo

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, naming, watchdog
from tenantdb.settings import PlanLimits
from tests.e2e.support import eventually

pytestmark = pytest.mark.postgres

QUICK = PlanLimits(connection_limit=5, statement_timeout="1s")
PATIENT = PlanLimits(connection_limit=5, statement_timeout="1h")
LIMITS = {"wd_quick": 1.0, "wd_patient": 3600.0}
IGNORES_CANCEL = """
DO $$
BEGIN
  FOR i IN 1..3 LOOP
    BEGIN
      PERFORM pg_sleep(30);
    EXCEPTION WHEN query_canceled THEN
      NULL;  -- swallow the cancel and carry on
    END;
  END LOOP;
END
$$
"""


class Session(threading.Thread):
    """A tenant's session running statements in the background; keeps the error it ends with."""

    def __init__(self, url: str, *statements: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.statements = statements
        self.pid: int | None = None
        self.error: psycopg.Error | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                self.pid = conn.info.backend_pid
                self.connected.set()
                for statement in self.statements:
                    conn.execute(statement)
        except psycopg.Error as exc:
            self.error = exc
        finally:
            self.connected.set()


@dataclass(frozen=True)
class Login:
    role: str
    url: str


def provision(server: commands.Server, name: str, plan: str, limits: PlanLimits) -> Login:
    req = commands.TenantRequest(
        uid=str(uuid.uuid4()),
        name=name,
        namespace="default",
        isolation=Isolation.SCHEMA,
        plan=plan,
        limits=limits,
    )
    password = f"pw-{uuid.uuid4().hex}"
    tenant = commands.provision(server, req, password, True)
    url = conninfo.make_conninfo(
        server.url, user=tenant.names.login_role, password=password, dbname=tenant.database
    )
    return Login(tenant.names.login_role, url)


@pytest.fixture(scope="module")
def watchdog_pool(database_url: str, server: commands.Server) -> Iterator[connecting.Pool]:
    """A pool of a role with exactly the grants the watchdog is documented to need."""
    role, password = f"wd_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            f"CREATE ROLE {role} LOGIN NOSUPERUSER CREATEROLE CREATEDB PASSWORD '{password}'"
            " IN ROLE pg_signal_backend, pg_read_all_stats"
        )
        # In production the operator owns the control schema and its database; here
        # a superuser grants what this role needs of them.
        admin.execute(f'GRANT CONNECT ON DATABASE "{admin.info.dbname}" TO {role}')
        admin.execute(f"GRANT USAGE ON SCHEMA tenantdb TO {role}")
        admin.execute(f"GRANT SELECT ON tenantdb.tenants TO {role}")
        assert admin.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone() == (False,)
    pool = connecting.open_pool(
        conninfo.make_conninfo(database_url, user=role, password=password), 1, 2, "watchdog-test"
    )
    yield pool
    pool.close()
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def patrol(
    dog: watchdog.Watchdog, pool: connecting.Pool, until: watchdog.Action
) -> list[watchdog.Verdict]:
    """Tick until the watchdog has done ``until`` once; every verdict carried out."""
    done: list[watchdog.Verdict] = []

    def acted() -> bool:
        done.extend(dog.tick(pool))
        return any(v.action is until for v in done)

    eventually(acted, timeout=60)
    return done


def active(admin: psycopg.Connection, pid: int | None) -> bool:
    row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row == ("active",)


def test_a_statement_past_its_plan_is_cancelled_and_one_within_it_is_not(
    server: commands.Server, watchdog_pool: connecting.Pool, admin: psycopg.Connection
) -> None:
    quick = provision(server, "wd-quick", "wd_quick", QUICK)
    patient = provision(server, "wd-patient", "wd_patient", PATIENT)
    within = Session(patient.url, "SET statement_timeout = 0", "SELECT pg_sleep(60)")
    past = Session(quick.url, "SET statement_timeout = 0", "SELECT pg_sleep(60)")
    within.start()
    within.connected.wait(10)
    eventually(lambda: active(admin, within.pid))
    past.start()
    dog = watchdog.Watchdog(naming.identifier("tenantdb"), LIMITS, grace=0.0, terminate_grace=60.0)

    done = patrol(dog, watchdog_pool, watchdog.Action.CANCEL)

    past.join(30)
    assert isinstance(past.error, psycopg.errors.QueryCanceled)
    assert "user request" in str(past.error)  # the watchdog's cancel, not a server timeout
    assert [(v.action, v.statement.role, v.statement.pid) for v in done] == [
        (watchdog.Action.CANCEL, quick.role, past.pid)
    ]
    assert done[0].limit == 1.0
    assert done[0].statement.running > done[0].limit
    assert within.is_alive() and active(admin, within.pid)
    admin.execute("SELECT pg_cancel_backend(%s)", (within.pid,))
    within.join(30)


def test_a_statement_that_ignores_its_cancel_has_its_session_terminated(
    server: commands.Server, watchdog_pool: connecting.Pool
) -> None:
    stubborn = provision(server, "wd-stubborn", "wd_quick", QUICK)
    session = Session(stubborn.url, "SET statement_timeout = 0", IGNORES_CANCEL)
    session.start()
    dog = watchdog.Watchdog(naming.identifier("tenantdb"), LIMITS, grace=0.0, terminate_grace=0.5)

    done = patrol(dog, watchdog_pool, watchdog.Action.TERMINATE)

    session.join(30)
    assert isinstance(session.error, psycopg.errors.AdminShutdown)
    assert [v.action for v in done] == [watchdog.Action.CANCEL, watchdog.Action.TERMINATE]
    assert {v.statement.pid for v in done} == {session.pid}
    terminated = done[-1]
    assert terminated.since_cancel is not None and terminated.since_cancel >= 0.5
    later: list[watchdog.Verdict] = []
    eventually(lambda: not (later.extend(dog.tick(watchdog_pool)) or dog.memory))
    assert later == []  # terminated once, and forgotten once the backend is gone
