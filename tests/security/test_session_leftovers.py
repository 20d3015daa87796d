"""Session state a Migration leaves behind reaches nobody: not its own next Migration, not
another tenant's, not the operator.

A ``transactional: false`` script (statements on the session itself, no
transaction to roll back) sets session-level ``search_path``,
``statement_timeout`` and ``lock_timeout``, makes temporary tables named
like the operator's (``tenants``, ``locks``, ``migration_ledger``,
``tenantdb_migrations``) and a prepared statement. Its owner's session goes
back to the cache through ``DISCARD ALL``; sessions are cached per role, so
another tenant's never meets it. The next Migrations see a clean session.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.security import attacking
from tests.security.conftest import Boundary

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

SEEN = """CREATE TABLE {table} AS SELECT pg_backend_pid() AS pid,
  current_setting('search_path') AS search_path,
  current_setting('statement_timeout') AS statement_timeout,
  (SELECT count(*) FROM pg_prepared_statements) AS prepared,
  to_regclass('pg_temp.tenants') IS NOT NULL AS temp_tables"""

LEAVE = """SELECT set_config('search_path', 'public, pg_temp', false);
CREATE TEMP TABLE tenants (uid text);
CREATE TEMP TABLE locks (key text);
CREATE TEMP TABLE migration_ledger (tenant_uid text);
CREATE TEMP TABLE tenantdb_migrations (version bigint, checksum text);
PREPARE leftover AS SELECT 1;
SET SESSION lock_timeout = 1;
SELECT set_config('search_path', '{schema}, pg_temp', false);
{seen};
SET SESSION statement_timeout = 1"""


def test_session_state_left_by_a_migration_reaches_no_later_work(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    atk, vic = boundary.tenant("atk"), boundary.tenant("vic")
    left = attacking.migration(
        boundary.a,
        "leave-state",
        next(boundary.versions),
        LEAVE.format(schema=atk.status["schema"], seen=SEEN.format(table="left_state")),
        "atk",
        transactional=False,
    )
    assert left["phase"] == "Succeeded", left
    schema = atk.status["schema"]
    leftover = admin.execute(f'SELECT * FROM "{schema}".left_state').fetchone()
    assert leftover is not None and leftover[3:] == (1, True)  # the state really was there
    assert leftover[2] != "1ms"  # set after the snapshot, last, to outlive the script
    for user, tenant, name in ((boundary.a, atk, "next-own"), (boundary.b, vic, "next-other")):
        status = attacking.migration(
            user, name, next(boundary.versions), SEEN.format(table="clean_state"), tenant.name
        )
        assert status["phase"] == "Succeeded", status
        clean = admin.execute(
            f'SELECT search_path, prepared, temp_tables FROM "{tenant.status["schema"]}".clean_state'
        ).fetchone()
        assert clean == (tenant.status["schema"], 0, False), clean
    # the operator's own work on the tenant: a spec change provisions it again
    generation = boundary.a.kubectl.get("tenant", "atk")["metadata"]["generation"]
    boundary.a.kubectl.run(
        "patch", "tenant", "atk", "--type=merge", "-p", '{"spec":{"displayName":"Leftovers"}}'
    )
    boundary.a.kubectl.wait(
        "tenant/atk", f"jsonpath={{.status.observedGeneration}}={generation + 1}", timeout=90
    )
    boundary.a.kubectl.wait("tenant/atk", "condition=Ready", timeout=90)
