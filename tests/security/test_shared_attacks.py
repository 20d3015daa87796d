"""Attacks on shared tables under row-level security, per-tenant roles and pooled."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import psycopg_pool
import pytest
from psycopg import errors

from tenantdb.core import naming
from tests.security.conftest import Pair

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
RLS_VIOLATION = errors.InsufficientPrivilege  # "new row violates row-level security policy"


@pytest.fixture(scope="module")
def pair(world: dict[str, Pair]) -> Pair:
    return world["shared"]


@pytest.fixture(scope="module")
def space(pair: Pair) -> naming.SharedNames:
    """The namespace's shared space both tenants live in (status.schema names it)."""
    schema = pair.a.status["schema"]
    assert pair.b.status["schema"] == schema
    return naming.SharedNames(
        naming.identifier(schema),
        naming.identifier(f"{schema}_owner"),
        naming.identifier(f"{schema}_tenants"),
        naming.identifier(f"{schema}_pooled"),
    )


def visible_tenants(conn: psycopg.Connection, table: str = "sec_companies") -> set[str]:
    return {str(r[0]) for r in conn.execute(f"SELECT DISTINCT tenant_id FROM {table}")}


def test_reads_see_only_own_rows(pair: Pair) -> None:
    with pair.a.connect() as conn:
        assert visible_tenants(conn) == {pair.a.uid}
        assert visible_tenants(conn, "sec_leads") == {pair.a.uid}


def test_insert_with_b_tenant_id(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(RLS_VIOLATION, match="row-level security"):
        conn.execute(
            "INSERT INTO sec_companies (tenant_id, name) VALUES (%s, 'Planted')", (pair.b.uid,)
        )


def test_update_own_row_to_b_tenant_id(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(RLS_VIOLATION, match="row-level security"):
        conn.execute("UPDATE sec_leads SET tenant_id = %s", (pair.b.uid,))


def test_upsert_into_b_tenant_id(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(RLS_VIOLATION, match="row-level security"):
        conn.execute(
            "INSERT INTO sec_companies (name) VALUES ('Initech')"
            " ON CONFLICT (tenant_id, name) DO UPDATE SET tenant_id = %s",
            (pair.b.uid,),
        )


def test_update_and_delete_b_rows_touch_nothing(
    pair: Pair, admin: psycopg.Connection, space: naming.SharedNames
) -> None:
    with pair.a.connect() as conn:
        assert (
            conn.execute(
                "UPDATE sec_companies SET name = 'x' WHERE tenant_id = %s", (pair.b.uid,)
            ).rowcount
            == 0
        )
        assert (
            conn.execute("DELETE FROM sec_leads WHERE tenant_id = %s", (pair.b.uid,)).rowcount == 0
        )
    remaining = admin.execute(
        f"SELECT count(*) FROM {space.schema}.sec_leads WHERE tenant_id = %s", (pair.b.uid,)
    )
    assert remaining.fetchone() == (1,)


def test_set_config_of_the_session_variable_changes_nothing(pair: Pair) -> None:
    with pair.a.connect() as conn:
        conn.execute("SELECT set_config('tenantdb.tenant_id', %s, false)", (pair.b.uid,))
        conn.execute("SET tenantdb.tenant_scope = 'forged'")
        assert visible_tenants(conn) == {pair.a.uid}


def test_forged_transaction_marker_changes_nothing(pair: Pair) -> None:
    with pair.a.connect() as conn:
        conn.execute("SELECT set_config('tenantdb.tenant_id', %s, true)", (pair.b.uid,))
        conn.execute("SELECT set_config('tenantdb.tenant_scope', transaction_marker(), true)")
        assert visible_tenants(conn) == {pair.a.uid}


def test_set_tenant_is_not_for_tenant_roles(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT set_tenant(%s, %s)", (pair.b.uid, pair.b.secret["tenantToken"]))


def test_truncate_shared_table(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("TRUNCATE sec_leads")


def test_disable_row_level_security(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("ALTER TABLE sec_companies DISABLE ROW LEVEL SECURITY")


def test_drop_the_policy(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("DROP POLICY tenantdb_isolation ON sec_companies")


def test_mapping_table_shows_only_own_mapping(pair: Pair) -> None:
    with pair.a.connect() as conn:
        rows = conn.execute("SELECT tenant_id::text FROM tenant_roles").fetchall()
    assert rows == [(pair.a.uid,)]


def test_remap_self_to_b(pair: Pair) -> None:
    with pair.a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("UPDATE tenant_roles SET tenant_id = %s", (pair.b.uid,))


def test_set_role_to_shared_owner_or_pooled(pair: Pair, space: naming.SharedNames) -> None:
    for role in (space.owner_role, space.pooled_role):
        with pair.a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"SET ROLE {role}")


def test_foreign_key_cannot_point_at_b_rows(
    pair: Pair, admin: psycopg.Connection, space: naming.SharedNames
) -> None:
    """Foreign keys bypass RLS; the composite key keeps them inside the tenant."""
    b_company = admin.execute(
        f"SELECT id FROM {space.schema}.sec_companies WHERE tenant_id = %s LIMIT 1", (pair.b.uid,)
    ).fetchone()
    assert b_company is not None
    with pair.a.connect() as conn:
        own = {r[0] for r in conn.execute("SELECT id FROM sec_companies")}
        assert b_company[0] not in own
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO sec_leads (company_id, email) VALUES (%s, 'x@y.z')", (b_company[0],)
            )


def test_unique_keys_do_not_leak_other_tenants_values(
    pair: Pair, admin: psycopg.Connection, space: naming.SharedNames
) -> None:
    def b_companies() -> list[tuple[object, ...]]:
        return admin.execute(
            f"SELECT id, name FROM {space.schema}.sec_companies WHERE tenant_id = %s ORDER BY id",
            (pair.b.uid,),
        ).fetchall()

    before = b_companies()
    assert len(before) == 2
    with pair.a.connect() as conn:
        # B has that name too; the key is per tenant, so A's insert succeeds.
        assert (
            conn.execute("INSERT INTO sec_companies (name) VALUES (%s)", (pair.b.name,)).rowcount
            == 1
        )
        conn.rollback()
        with pytest.raises(errors.UniqueViolation) as caught:
            conn.execute("INSERT INTO sec_companies (name) VALUES (%s)", (pair.a.name,))
        conn.rollback()
    # Under row-level security PostgreSQL leaves the key out of the detail altogether.
    detail = caught.value.diag.message_detail or ""
    assert pair.b.uid not in detail
    assert pair.b.name not in detail
    assert b_companies() == before


def test_every_shared_table_forces_rls_and_no_tenant_owns_one(
    admin: psycopg.Connection, space: naming.SharedNames
) -> None:
    rows = admin.execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (space.schema,),
    ).fetchall()
    assert rows
    for name, rls, forced, owner in rows:
        if name == "tenant_roles":  # the operator's own: RLS binds every other role
            assert rls and not forced and owner == "tenantdb_operator", name
        elif name in ("tenantdb_migrations", "tenantdb_policy_reference", "tenantdb_token_keys"):
            # bookkeeping no tenant may read
            expected = (
                "tenantdb_operator" if name == "tenantdb_policy_reference" else space.owner_role
            )
            assert owner == expected, name
            for group in (space.members_role, space.pooled_role):
                granted = admin.execute(
                    "SELECT has_table_privilege(%s, %s, 'SELECT, INSERT, UPDATE, DELETE')",
                    (group, f"{space.schema}.{name}"),
                ).fetchone()
                assert granted == (False,), group
        else:
            assert rls and forced, name
            assert owner == space.owner_role, name


@pytest.fixture(scope="module")
def pooled(database_url: str, space: naming.SharedNames) -> Iterator[psycopg_pool.ConnectionPool]:
    """An application role shared by all tenants (made by the platform's admin), with a
    real connection pool."""
    admin = psycopg.connect(database_url, autocommit=True)
    admin.execute("DROP ROLE IF EXISTS sec_pooled_app")
    admin.execute(
        f"CREATE ROLE sec_pooled_app LOGIN PASSWORD 'pooled-secret' IN ROLE {space.pooled_role}"
    )
    admin.execute(f"ALTER ROLE sec_pooled_app SET search_path = {space.schema}")
    url = psycopg.conninfo.make_conninfo(
        database_url, user="sec_pooled_app", password="pooled-secret"
    )
    pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=1, open=True)
    yield pool
    pool.close()
    admin.execute("DROP OWNED BY sec_pooled_app")
    admin.execute("DROP ROLE sec_pooled_app")
    admin.close()


def test_pooled_unset_means_zero_rows(pooled: psycopg_pool.ConnectionPool, pair: Pair) -> None:
    with pooled.connection() as conn:
        assert visible_tenants(conn) == set()


def test_pooled_empty_means_zero_rows(pooled: psycopg_pool.ConnectionPool, pair: Pair) -> None:
    with pooled.connection() as conn:
        conn.execute("SET LOCAL tenantdb.tenant_id = ''")
        conn.execute("SELECT set_config('tenantdb.tenant_scope', transaction_marker(), true)")
        assert visible_tenants(conn) == set()


def test_pooled_bare_session_variable_means_zero_rows(
    pooled: psycopg_pool.ConnectionPool, pair: Pair
) -> None:
    with pooled.connection() as conn:
        conn.execute("SELECT set_config('tenantdb.tenant_id', %s, true)", (pair.a.uid,))
        assert visible_tenants(conn) == set()


def test_pooled_set_tenant_sees_exactly_that_tenant(
    pooled: psycopg_pool.ConnectionPool, pair: Pair
) -> None:
    with pooled.connection() as conn:
        conn.execute("SELECT set_tenant(%s, %s)", (pair.a.uid, pair.a.secret["tenantToken"]))
        assert visible_tenants(conn) == {pair.a.uid}
        with pytest.raises(RLS_VIOLATION):
            conn.execute(
                "INSERT INTO sec_companies (tenant_id, name) VALUES (%s, 'x')", (pair.b.uid,)
            )


def test_pooled_session_level_value_does_not_leak_to_next_transaction(
    pooled: psycopg_pool.ConnectionPool, pair: Pair
) -> None:
    with pooled.connection() as conn:  # tenant A's request, setting values without LOCAL
        conn.execute("SELECT set_config('tenantdb.tenant_id', %s, false)", (pair.a.uid,))
        conn.execute(
            "SELECT set_config('tenantdb.tenant_token', %s, false)", (pair.a.secret["tenantToken"],)
        )
        conn.execute("SELECT set_config('tenantdb.tenant_scope', transaction_marker(), false)")
        assert visible_tenants(conn) == {pair.a.uid}
    with pooled.connection() as conn:  # the next request on the same connection
        assert conn.execute("SELECT current_setting('tenantdb.tenant_id')").fetchone() == (
            pair.a.uid,
        )
        assert visible_tenants(conn) == set()


def test_pooled_set_tenant_without_the_tenants_token_is_refused(
    pooled: psycopg_pool.ConnectionPool, pair: Pair
) -> None:
    """A request for A, fully injected, knows A's token only: it cannot choose B."""
    a_token = pair.a.secret["tenantToken"]
    for tenant, token in ((pair.b.uid, a_token), (pair.b.uid, ""), (pair.b.uid, "0" * 64)):
        with (
            pooled.connection() as conn,
            pytest.raises(psycopg.errors.InvalidAuthorizationSpecification),
        ):
            conn.execute("SELECT set_tenant(%s, %s)", (tenant, token))
    with pooled.connection() as conn:  # control: B's own token chooses B
        conn.execute("SELECT set_tenant(%s, %s)", (pair.b.uid, pair.b.secret["tenantToken"]))
        assert visible_tenants(conn) == {pair.b.uid}


def test_pooled_settings_written_by_hand_without_a_valid_token_mean_zero_rows(
    pooled: psycopg_pool.ConnectionPool, pair: Pair
) -> None:
    """Going around ``set_tenant``: the token is checked again on every query."""
    with pooled.connection() as conn:
        conn.execute(
            "SELECT set_config('tenantdb.tenant_id', %s, true),"
            " set_config('tenantdb.tenant_token', %s, true),"
            " set_config('tenantdb.tenant_scope', transaction_marker(), true)",
            (pair.b.uid, pair.a.secret["tenantToken"]),
        )
        assert visible_tenants(conn) == set()


@pytest.mark.parametrize(
    "state",
    [
        "CREATE TEMPORARY TABLE carried AS SELECT 1 AS n",
        "DECLARE carried CURSOR WITH HOLD FOR SELECT 1",
    ],
    ids=["temporary-table", "held-cursor"],
)
def test_pooled_switch_refused_while_state_could_carry_rows(
    pooled: psycopg_pool.ConnectionPool, pair: Pair, state: str
) -> None:
    with pooled.connection() as conn:
        conn.autocommit = True
        try:
            conn.execute(state)
            with pytest.raises(psycopg.errors.InvalidTransactionState):
                conn.execute(
                    "SELECT set_tenant(%s, %s)", (pair.a.uid, pair.a.secret["tenantToken"])
                )
            conn.execute("DISCARD ALL")
            conn.execute(
                "SELECT set_tenant(%s, %s)", (pair.a.uid, pair.a.secret["tenantToken"])
            )  # control: a clean session may
        finally:
            conn.autocommit = False


def test_each_shared_tenant_secret_carries_a_token_of_its_own(pair: Pair) -> None:
    tokens = {pair.a.secret.get("tenantToken"), pair.b.secret.get("tenantToken")}
    assert None not in tokens and len(tokens) == 2
    assert all(len(str(t)) == 64 for t in tokens)
