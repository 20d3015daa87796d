"""A namespace user with the real RBAC tries to leave its tenant from Migration SQL.

User A (a ServiceAccount token allowed tenants, migrations and backups in
namespace A, see ``rbac``) sends every Migration through the API server;
the operator runs it on a session whose session user is the tenant's owner
role. Each escape is tried three ways in one ``transactional: false``
script: inside a PL/pgSQL block that records what happened (who it ran as,
the database's error) in the tenant's ``whoami`` table, then who the
session is afterwards, then plainly, so that the Migration's status carries
the database's own refusal. Whatever spelling is used, session user and
current user stay the owner role, and nothing outside the tenant changes.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.security import attacking
from tests.security.conftest import Boundary

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

PROBE = "SELECT count(*) FROM tenantdb.tenants"
"""Only an escaped session could read the registry: the refusal every no-op escape ends with."""
PROBE_REFUSED = "permission denied for schema tenantdb"


def escape(label: str, attempt: str, probe: str = PROBE) -> str:
    """The attempt recorded from PL/pgSQL, who the session is after it, then the attempt
    and the probe plainly (the first refusal is what status shows)."""
    return f"""DO $wrap$
BEGIN
  EXECUTE $attempt${attempt}$attempt$;
  INSERT INTO whoami (label, session_role, current_role_name)
    VALUES ('{label}', session_user, current_user);
EXCEPTION WHEN OTHERS THEN
  INSERT INTO whoami (label, session_role, current_role_name, error)
    VALUES ('{label}', session_user, current_user, SQLERRM);
END
$wrap$;
INSERT INTO whoami (label, session_role, current_role_name)
  VALUES ('{label}/after', session_user, current_user);
{attempt};
INSERT INTO whoami (label, session_role, current_role_name)
  VALUES ('{label}/plain', session_user, current_user);
{probe}"""


def attack(
    boundary: Boundary,
    admin: psycopg.Connection,
    label: str,
    attempt: str,
    refused: str,
    probe: str = PROBE,
) -> list[tuple[Any, ...]]:
    """Run ``escape`` as user A on tenant atk; status must name ``refused``; returns the
    ``whoami`` rows after checking that each was the owner role, and that nothing
    outside the tenant changed."""
    atk = boundary.tenant("atk")
    before = attacking.outside(admin, boundary, atk)
    status = attacking.migration(
        boundary.a,
        f"esc-{label.replace('_', '-')}",
        next(boundary.versions),
        escape(label, attempt, probe),
        "atk",
        transactional=False,
    )
    assert status["phase"] == "Halted"
    error = attacking.failure(status, "atk")
    assert refused in error and "SQLSTATE 42501" in error, error
    rows = attacking.whoami(admin, atk, label)
    assert [r[0] for r in rows][:2] == [label, f"{label}/after"]
    owner = atk.status["ownerRole"]
    assert {(r[1], r[2]) for r in rows} == {(owner, owner)}
    assert attacking.outside(admin, boundary, atk) == before
    return rows


def filtered(boundary: Boundary, admin: psycopg.Connection, label: str, statement: str) -> None:
    """A plain spelling is refused before anything of the script runs."""
    atk = boundary.tenant("atk")
    before = attacking.outside(admin, boundary, atk)
    status = attacking.migration(
        boundary.a,
        f"esc-{label.replace('_', '-')}",
        next(boundary.versions),
        escape(label, statement),
        "atk",
    )
    ready = attacking.ready(status)
    assert status["phase"] == "Failed" and ready["reason"] == "InvalidSpec", status
    assert "is not allowed in a migration" in ready["message"]
    assert attacking.whoami(admin, atk, label) == []  # not even the first statement ran
    assert attacking.outside(admin, boundary, atk) == before


# -- the token: its own namespace only ------------------------------------------------


def test_token_creates_tenants_in_its_own_namespace(boundary: Boundary) -> None:
    user = boundary.a
    who = user.kubectl.run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == user.username
    tenant = user.kubectl.get("tenant", "atk")  # created with this token by the fixture
    assert user.kubectl.run("auth", "can-i", "create", "tenants").stdout.strip() == "yes"
    created = user.kubectl.run(
        "create", "--dry-run=server", "-o", "name", "-f", "-", stdin=_tenant("probe")
    )
    assert created.stdout.strip() == "tenant.tenantdb.io/probe"
    assert user.kubectl.secret_data("atk-credentials")["username"] == tenant["status"]["role"]


def test_token_cannot_write_the_operators_bookkeeping_in_status(boundary: Boundary) -> None:
    """``status.operator`` (kopf's diff base, its progress, the requeue's wake-ups) is the
    operator's: the namespace's token is refused the status subresource, and a status
    sent with the object itself is dropped by the API server."""
    user = boundary.a
    forged = '{"status":{"operator":{"requeue":"forged","lastHandledConfiguration":"{}"}}}'
    refused = user.kubectl.run(
        "patch", "tenant", "atk", "--subresource=status", "--type=merge", "-p", forged,
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    user.kubectl.run("patch", "tenant", "atk", "--type=merge", "-p", forged)
    operator = user.kubectl.get("tenant", "atk").get("status", {}).get("operator") or {}
    assert operator.get("requeue") != "forged"
    assert operator.get("lastHandledConfiguration") != "{}"


def test_token_is_forbidden_in_the_other_namespace(boundary: Boundary) -> None:
    other = boundary.a.elsewhere(boundary.b.namespace)
    attempts = [
        ("create", "-f", "-"),
        ("get", "tenant", "vic"),
        ("get", "secret", "vic-credentials"),
        ("delete", "tenant", "vic"),
        ("get", "migrations"),
        ("annotate", "tenant", "vic", "tenantdb.io/rotate-credentials=1"),
    ]
    for args in attempts:
        result = other.run(*args, stdin=_tenant("intruder"), check=False)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), args
    assert boundary.b.kubectl.get("tenant", "vic")["metadata"]["uid"] == boundary.tenant("vic").uid


def test_token_is_forbidden_for_cluster_scoped_objects_and_rbac(boundary: Boundary) -> None:
    kubectl = boundary.a.kubectl
    attempts = [
        ("create", "namespace", "intruder"),
        ("get", "customresourcedefinitions"),
        ("get", "namespaces"),
        ("create", "clusterrolebinding", "x", "--clusterrole=cluster-admin", "--user=x"),
        ("create", "rolebinding", "x", "--clusterrole=admin", f"--user={boundary.a.username}"),
        ("create", "token", "tenantdb-user"),
        ("get", "configmaps"),
    ]
    for args in attempts:
        result = kubectl.run(*args, check=False)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), args


def _tenant(name: str) -> str:
    return (
        f"apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n"
        "spec:\n  isolation: schema\n"
    )


# -- plain spellings: the statement filter refuses them early (it is not the boundary) --


def test_plain_set_role_is_refused_before_anything_runs(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    filtered(boundary, admin, "set-role", "SET ROLE tenantdb_operator")


def test_plain_reset_role_is_refused_before_anything_runs(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    filtered(boundary, admin, "reset-role", "RESET ROLE")


def test_plain_set_session_authorization_default_is_refused_before_anything_runs(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    filtered(boundary, admin, "ssa-default", "SET SESSION AUTHORIZATION DEFAULT")


def test_plain_reset_session_authorization_is_refused_before_anything_runs(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    filtered(boundary, admin, "reset-ssa", "RESET SESSION AUTHORIZATION")


# -- spellings that pass the filter: the session user is the boundary ------------------


def test_set_config_role_to_the_superuser_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    rows = attack(
        boundary,
        admin,
        "set-config-role",
        "SELECT set_config('role', 'postgres', false)",
        'permission denied to set role "postgres"',
    )
    assert 'permission denied to set role "postgres"' in str(rows[0][3])


def test_set_config_role_to_the_operator_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "set-config-operator",
        "SELECT set_config('role', 'tenantdb_operator', false)",
        'permission denied to set role "tenantdb_operator"',
    )


def test_quoted_role_parameter_passes_the_filter_and_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "quoted-role",
        'SET "role" TO tenantdb_operator',
        'permission denied to set role "tenantdb_operator"',
    )


def test_dynamic_reset_role_in_a_do_block_stays_the_owner(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    rows = attack(
        boundary,
        admin,
        "dynamic-reset",
        "DO $$ BEGIN EXECUTE 'RESET ' || 'ROLE'; EXECUTE 'RESET SESSION ' || 'AUTHORIZATION'; END $$",
        PROBE_REFUSED,
    )
    assert rows[0][3] is None  # the resets ran, and led back to the owner role


def test_dynamic_session_authorization_to_the_superuser_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "dynamic-ssa",
        "DO $$ BEGIN EXECUTE 'SET SESSION AUTHORIZATION ' || 'postgres'; END $$",
        "permission denied to set session authorization",
    )


def test_security_definer_function_with_set_role_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "definer",
        "CREATE OR REPLACE FUNCTION escalate() RETURNS bigint LANGUAGE sql SECURITY DEFINER"
        " SET role = 'tenantdb_operator' AS 'SELECT count(*) FROM tenantdb.tenants'",
        'permission denied to set role "tenantdb_operator"',
        probe="SELECT escalate()",
    )


def test_alter_own_role_superuser_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "superuser",
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "permission denied to alter role",
    )


def test_grant_pg_read_all_data_to_itself_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "read-all-data",
        "GRANT pg_read_all_data TO CURRENT_USER",
        'permission denied to grant role "pg_read_all_data"',
    )


def test_set_role_to_the_connect_group_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "connect-group",
        f"SELECT set_config('role', '{attacking.GROUP}', false)",
        f'permission denied to set role "{attacking.GROUP}"',
    )


def test_granting_the_connect_group_to_the_other_namespace_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    victim = boundary.tenant("vic").status["role"]
    attack(
        boundary,
        admin,
        "grant-group",
        f'GRANT "{attacking.GROUP}" TO "{victim}" WITH SET TRUE',
        f'permission denied to grant role "{attacking.GROUP}"',
    )


def test_handing_a_table_to_the_connect_group_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    attack(
        boundary,
        admin,
        "hand-table",
        f'ALTER TABLE whoami OWNER TO "{attacking.GROUP}"',
        f'must be able to SET ROLE "{attacking.GROUP}"',
    )


def test_create_role_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "create-role",
        "CREATE ROLE intruder LOGIN SUPERUSER PASSWORD 'intruder'",
        "permission denied to create role",
    )


def test_alter_the_other_namespaces_tenant_role_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    victim = boundary.tenant("vic").status["role"]
    attack(
        boundary,
        admin,
        "alter-victim",
        f"ALTER ROLE \"{victim}\" PASSWORD 'known'",
        "permission denied to alter role",
    )


def test_copy_to_program_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "copy-program",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/tenantdb-escaped'",
        "permission denied to COPY to or from an external program",
    )


def test_copy_from_a_server_file_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "copy-file",
        "COPY tripwire (name) FROM '/etc/passwd'",
        "permission denied to COPY from a file",
    )


def test_pg_read_file_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "read-file",
        "SELECT pg_read_file('/etc/passwd')",
        "permission denied for function pg_read_file",
    )


def test_lo_import_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "lo-import",
        "SELECT lo_import('/etc/passwd')",
        "permission denied for function lo_import",
    )


def test_create_extension_is_refused(boundary: Boundary, admin: psycopg.Connection) -> None:
    attack(
        boundary,
        admin,
        "extension",
        "CREATE EXTENSION dblink",
        'permission denied to create extension "dblink"',
    )


def test_control_schema_is_unreadable(boundary: Boundary, admin: psycopg.Connection) -> None:
    for table in ("migration_ledger", "locks"):
        attack(
            boundary,
            admin,
            f"read-{table}",
            f"SELECT * FROM tenantdb.{table}",
            PROBE_REFUSED,
        )


def test_writing_the_other_namespaces_tenant_schema_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    schema = boundary.tenant("vic").status["schema"]
    attack(
        boundary,
        admin,
        "write-victim",
        f"INSERT INTO \"{schema}\".notes VALUES (2, 'planted')",
        f"permission denied for schema {schema}",
    )


SIGNAL = """DO $$
DECLARE
  target int;
  seen int := 0;
  refused int := 0;
  refusal text;
BEGIN
  FOR target IN SELECT pid FROM pg_stat_activity WHERE usename = 'tenantdb_operator' LOOP
    seen := seen + 1;
    BEGIN
      PERFORM {function}(target);
    EXCEPTION WHEN insufficient_privilege THEN
      refused := refused + 1;
      refusal := SQLERRM;
    END;
  END LOOP;
  IF seen = 0 THEN
    RAISE EXCEPTION 'no operator session visible';
  END IF;
  RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
    MESSAGE = format('%s: refused for %s of %s operator sessions', refusal, refused, seen);
END $$"""
"""Every operator session is tried (a refusal does not end the loop), and the count of
refusals is the error: a session the attack could signal would show in it."""


def _refused_everywhere(error: str) -> None:
    found = re.search(r"refused for (\d+) of (\d+) operator sessions", error)
    assert found is not None and found[1] == found[2] and int(found[1]) > 0, error


def test_terminating_the_operators_sessions_is_refused(
    boundary: Boundary, admin: psycopg.Connection, operator_url: str
) -> None:
    """A session of the operator's role held by the test is among those tried, and it
    still answers afterwards (the operator's own come and go with its pools)."""
    with psycopg.connect(operator_url, autocommit=True) as witness:
        rows = attack(
            boundary,
            admin,
            "terminate",
            SIGNAL.format(function="pg_terminate_backend"),
            "permission denied to terminate process",
        )
        assert witness.execute("SELECT 1").fetchone() == (1,)
    _refused_everywhere(str(rows[0][3]))


def test_cancelling_the_operators_queries_is_refused(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    rows = attack(
        boundary,
        admin,
        "cancel",
        SIGNAL.format(function="pg_cancel_backend"),
        "permission denied to cancel query",
    )
    assert "permission denied to cancel query" in str(rows[0][3])
    _refused_everywhere(str(rows[0][3]))


def test_dry_run_role_escape_gets_the_same_treatment(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """A dry run rolls back, so it reports who it ran as in its own error."""
    atk = boundary.tenant("atk")
    before = attacking.outside(admin, boundary, atk)
    up = """DO $$
BEGIN
  EXECUTE 'RESET ' || 'ROLE';
  BEGIN
    PERFORM set_config('role', 'tenantdb_operator', false);
  EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'refused as %/%: %', session_user, current_user, SQLERRM
      USING ERRCODE = 'insufficient_privilege';
  END;
END $$"""
    status = attacking.migration(
        boundary.a, "esc-dry", next(boundary.versions), up, "atk", dryRun=True
    )
    assert status["phase"] == "Failed" and attacking.ready(status)["reason"] == "DryRunFailed"
    owner = atk.status["ownerRole"]
    error = attacking.failure(status, "atk")
    assert f"refused as {owner}/{owner}" in error, error
    assert 'permission denied to set role "tenantdb_operator"' in error
    assert attacking.outside(admin, boundary, atk) == before
