"""The shared spaces of ``shared`` tenants: schema, roles, functions, tenant tokens.

Shared tables live in a *shared space*: one schema per Kubernetes
namespace, owned by that namespace's shared owner role, with its own
tenants group and pooled group (``naming.shared_names``). Nothing of one
space is granted to a role of another, so a namespace is a boundary. The
legacy space (``tenantdb_shared``, owned by ``tenantdb_shared_owner``), made
by earlier versions for every namespace at once, keeps serving the tenants
provisioned there (``legacy``). Every builder takes the space it acts on. Every
table carries ``tenant_id uuid``; row-level security is ENABLED and FORCED,
and two policies (one permissive, one ``AS RESTRICTIVE``) require
``tenant_id = current_tenant_id()`` for every command, reads and writes
(``securing`` puts them there and checks them).

``current_tenant_id()`` answers in one of two ways:

* a tenant's own LOGIN role is mapped to its tenant in ``tenant_roles``, a
  table nobody but the operator (its owner, exempt from its row-level
  security) can write, whose rows each other role can only see for itself.
  No session variable can change that answer.
* a member of the space's pooled group (an application sharing one role for
  all tenants) picks a tenant per transaction with ``set_tenant(uuid,
  token)``; the token is an HMAC of the tenant's id under a key of the space
  only its owner can read (its Secret carries it as ``tenantToken``), and
  ``current_tenant_id()`` checks it again on every query, so a request for
  tenant A, even fully injected, cannot reach B without B's token. The
  choice is bound to the transaction, so a value left behind on a pooled
  connection is worth nothing in the next transaction: unset, empty, stale
  or without its token means zero rows, never all. Temporary tables and
  held cursors (which could carry rows across) make ``set_tenant`` refuse.
"""

from psycopg import sql

from tenantdb.core import errors, naming

LEGACY_OWNER = naming.Identifier("tenantdb_shared_owner")
"""Owner of the legacy schema shared by every namespace (earlier versions)."""
LEGACY_MEMBERS = naming.Identifier("tenantdb_shared_tenants")
LEGACY_POOLED = naming.Identifier("tenantdb_pooled")
Space = naming.SharedNames
MAPPING_TABLE = "tenant_roles"
MARKER_TABLE = "tenantdb_migrations"
"""The shared owner's record of applied shared-scope versions (``migrations.markers``)."""
REFERENCE_TABLE = "tenantdb_policy_reference"
"""An empty table carrying exactly the policies ``secure_table`` installs: every shared
table's policies are compared with its (deparsed by the same server, in the same
session), never by name alone."""
TOKEN_KEYS_TABLE = "tenantdb_token_keys"  # noqa: S105 - a table name
"""The keys tenant tokens are HMACs under: owned by the space's owner, readable by
nobody else; ``tenant_token_valid`` (a definer function) answers only yes or no."""
BOOKKEEPING_TABLES = (MAPPING_TABLE, MARKER_TABLE, REFERENCE_TABLE, TOKEN_KEYS_TABLE)
"""Tables of the shared schema that hold no tenant's rows."""
POLICIES = ("tenantdb_tenant_rows", "tenantdb_isolation")
"""The permissive and the restrictive policy every shared table carries."""


def legacy(schema: naming.Identifier) -> Space:
    """The legacy space: ``DatabaseSettings.shared_schema`` and the fixed roles."""
    return Space(schema, LEGACY_OWNER, LEGACY_MEMBERS, LEGACY_POOLED)


def space_of(schema_name: str | None, namespace: str, legacy_schema: naming.Identifier) -> Space:
    """The space a shared tenant's registry row names: its namespace's, or the legacy one."""
    if schema_name == legacy_schema:
        return legacy(legacy_schema)
    space = naming.shared_names(namespace, legacy_schema)
    if schema_name not in (None, space.schema):
        raise errors.InvalidName(
            f"shared schema {schema_name!r} is neither namespace {namespace}'s nor the legacy one"
        )
    return space


def create_role(role: naming.Identifier) -> sql.Composed:
    """One of the shared-mode group roles (none can log in)."""
    return sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(
        sql.Identifier(role)
    )


def bootstrap(space: Space) -> sql.Composed:
    """The space's schema, its mapping table, its functions and default privileges.

    Default privileges give tenants nothing: a new table is theirs only once
    ``secure_table`` has put it under row-level security, so no statement of
    a Migration (transactional or not, failed or not) ever leaves a table
    tenants can read without it.
    """
    schema = space.schema
    ids = {
        "schema": sql.Identifier(schema),
        "owner": sql.Identifier(space.owner_role),
        "members": sql.Identifier(space.members_role),
        "pooled": sql.Identifier(space.pooled_role),
        "mapping": sql.Identifier(schema, MAPPING_TABLE),
        "reference": sql.Identifier(schema, REFERENCE_TABLE),
        "current": sql.Identifier(schema, "current_tenant_id"),
        "marker": sql.Identifier(schema, "transaction_marker"),
        "set_tenant": sql.Identifier(schema, "set_tenant"),
        "keys": sql.Identifier(schema, TOKEN_KEYS_TABLE),
        "hmac": sql.Identifier(schema, "tenant_token_hmac"),
        "token_valid": sql.Identifier(schema, "tenant_token_valid"),
    }
    return sql.SQL(
        """
        CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};
        REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
        GRANT USAGE ON SCHEMA {schema} TO {members}, {pooled};
        ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
            REVOKE ALL ON TABLES FROM {members}, {pooled};
        ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}
            REVOKE ALL ON SEQUENCES FROM {members}, {pooled};
        CREATE TABLE IF NOT EXISTS {mapping} (
            role_name name PRIMARY KEY,
            tenant_id uuid NOT NULL UNIQUE
        );
        REVOKE ALL ON {mapping} FROM PUBLIC;
        GRANT SELECT ON {mapping} TO {members}, {pooled};
        CREATE TABLE IF NOT EXISTS {reference} (tenant_id uuid);
        REVOKE ALL ON {reference} FROM PUBLIC;
        ALTER TABLE {mapping} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {mapping} NO FORCE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS own_mapping_only ON {mapping};
        CREATE POLICY own_mapping_only ON {mapping} FOR SELECT USING (role_name = current_user);
        CREATE OR REPLACE FUNCTION {marker}() RETURNS text
            LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog
            AS $$ SELECT pg_backend_pid()::text || ':'
                  || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint::text $$;
        CREATE TABLE IF NOT EXISTS {keys} (
            created_at timestamptz PRIMARY KEY DEFAULT clock_timestamp(),
            key bytea NOT NULL CHECK (length(key) = 32)
        );
        ALTER TABLE {keys} OWNER TO {owner};
        REVOKE ALL ON {keys} FROM PUBLIC;
        INSERT INTO {keys} (key)
            SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                     || clock_timestamp()::text, 'UTF8'))
            WHERE NOT EXISTS (SELECT 1 FROM {keys});
        CREATE OR REPLACE FUNCTION {hmac}(key bytea, message bytea) RETURNS bytea
            LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog
            AS $$
              DECLARE
                block bytea := key || decode(repeat('00', 64 - length(key)), 'hex');
                inner_pad bytea := block;
                outer_pad bytea := block;
              BEGIN
                FOR i IN 0..63 LOOP
                  inner_pad := set_byte(inner_pad, i, get_byte(block, i) # 54);
                  outer_pad := set_byte(outer_pad, i, get_byte(block, i) # 92);
                END LOOP;
                RETURN sha256(outer_pad || sha256(inner_pad || message));
              END
            $$;
        ALTER FUNCTION {hmac}(bytea, bytea) OWNER TO {owner};
        REVOKE ALL ON FUNCTION {hmac}(bytea, bytea) FROM PUBLIC;
        CREATE OR REPLACE FUNCTION {token_valid}(tenant uuid, token text) RETURNS boolean
            LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog
            AS $$
              SELECT EXISTS (SELECT 1 FROM {keys} k
                             WHERE encode({hmac}(k.key, convert_to(tenant::text, 'UTF8')), 'hex')
                                   = lower(token))
            $$;
        ALTER FUNCTION {token_valid}(uuid, text) OWNER TO {owner};
        REVOKE ALL ON FUNCTION {token_valid}(uuid, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION {token_valid}(uuid, text) TO {members}, {pooled};
        CREATE OR REPLACE FUNCTION {current}() RETURNS uuid
            LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog
            AS $$
              SELECT coalesce(
                (SELECT m.tenant_id FROM {mapping} m WHERE m.role_name = current_user),
                CASE WHEN pg_has_role(current_user, {pooled_name}, 'MEMBER')
                      AND current_setting('tenantdb.tenant_scope', true) = {marker}()
                      AND {token_valid}(
                            nullif(current_setting('tenantdb.tenant_id', true), '')::uuid,
                            current_setting('tenantdb.tenant_token', true))
                     THEN nullif(current_setting('tenantdb.tenant_id', true), '')::uuid
                END)
            $$;
        DROP FUNCTION IF EXISTS {set_tenant}(uuid);
        CREATE OR REPLACE FUNCTION {set_tenant}(tenant uuid, token text) RETURNS void
            LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
            AS $$ BEGIN
              IF NOT coalesce({token_valid}(tenant, token), false) THEN
                RAISE EXCEPTION 'tenant token does not match tenant %', tenant
                  USING ERRCODE = 'invalid_authorization_specification';
              END IF;
              IF EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = pg_my_temp_schema())
                 OR EXISTS (SELECT 1 FROM pg_cursors WHERE is_holdable) THEN
                RAISE EXCEPTION 'temporary tables or held cursors could carry rows across tenants'
                  USING ERRCODE = 'invalid_transaction_state',
                        HINT = 'DISCARD ALL before choosing another tenant';
              END IF;
              PERFORM set_config('tenantdb.tenant_id', tenant::text, true);
              PERFORM set_config('tenantdb.tenant_token', token, true);
              PERFORM set_config('tenantdb.tenant_scope', {marker}(), true);
            END $$;
        REVOKE ALL ON FUNCTION {set_tenant}(uuid, text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION {set_tenant}(uuid, text) TO {pooled};
        """
    ).format(pooled_name=sql.Literal(space.pooled_role), **ids)


def tenant_token(space: Space) -> sql.Composed:
    """A shared tenant's token under the newest key (parameter: the tenant's uuid); the
    key never leaves the server."""
    return sql.SQL(
        "SELECT encode({hmac}(k.key, convert_to(%s::text, 'UTF8')), 'hex')"
        " FROM {keys} k ORDER BY k.created_at DESC LIMIT 1"
    ).format(
        hmac=sql.Identifier(space.schema, "tenant_token_hmac"),
        keys=sql.Identifier(space.schema, TOKEN_KEYS_TABLE),
    )


def map_role(schema: naming.Identifier, login_role: naming.Identifier, uid: str) -> sql.Composed:
    """Bind a LOGIN role to its tenant (values as literals, so it batches with the DDL)."""
    return sql.SQL(
        "INSERT INTO {} (role_name, tenant_id) VALUES ({}, {}::uuid)"
        " ON CONFLICT (role_name) DO NOTHING"
    ).format(sql.Identifier(schema, MAPPING_TABLE), sql.Literal(login_role), sql.Literal(uid))


def unmap_role(schema: naming.Identifier) -> sql.Composed:
    """Forget a LOGIN role's tenant (parameter: role name)."""
    return sql.SQL("DELETE FROM {} WHERE role_name = %s").format(
        sql.Identifier(schema, MAPPING_TABLE)
    )


def join_members(space: Space, login_role: naming.Identifier, server_version: int) -> sql.Composed:
    """A shared tenant's LOGIN role gets its space's tables' privileges, nothing more.

    From PostgreSQL 16 inheritance is a property of each grant; say it, and
    forbid SET ROLE to the group while at it.
    """
    options = sql.SQL(" WITH INHERIT TRUE, SET FALSE" if server_version >= 160000 else "")
    return sql.SQL("GRANT {} TO {}{}").format(
        sql.Identifier(space.members_role), sql.Identifier(login_role), options
    )


def delete_rows(schema: naming.Identifier, table: str) -> sql.Composed:
    """Every row the session's tenant sees in a table: run as the tenant's own login
    role, row-level security picks its rows alone."""
    return sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table))
