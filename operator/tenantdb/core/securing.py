"""Bringing a shared space's tables under row-level security, and what they may reveal.

Owns the isolation every shared table must have (RLS enabled and forced, the
two policies, ``tenant_id``'s default, tenants' privileges granted only
then), the comparison of each table's policies with the space's reference
table, and the checks of what a table's shape tells one tenant about
another (keys not starting with ``tenant_id``, sequences all tenants share).
``shared`` owns the space itself (schema, roles, functions, tokens).
"""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import naming, shared


def tables() -> sql.SQL:
    """Shared tables with their RLS flags, whether they have ``tenant_id``, their policies
    (all, and those equal to the reference table's in name, kind, command, roles and
    both expressions), owner, and whether tenants were granted them
    (parameters: schema, reference table, bookkeeping table names, members group)."""
    return sql.SQL(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                       AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS has_tenant_id,
               ARRAY(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid
                     ORDER BY 1) AS policy_names,
               (SELECT count(*) FROM pg_policy p JOIN pg_policy r
                  ON r.polrelid = ref.oid AND r.polname = p.polname
                 AND r.polpermissive = p.polpermissive AND r.polcmd = p.polcmd
                 AND r.polroles = p.polroles
                 AND pg_get_expr(r.polqual, r.polrelid)
                     IS NOT DISTINCT FROM pg_get_expr(p.polqual, p.polrelid)
                 AND pg_get_expr(r.polwithcheck, r.polrelid)
                     IS NOT DISTINCT FROM pg_get_expr(p.polwithcheck, p.polrelid)
                WHERE p.polrelid = c.oid) AS matching,
               pg_get_userbyid(c.relowner) AS owner,
               has_table_privilege(%(members)s, c.oid, 'SELECT') AS granted
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class ref ON ref.relnamespace = n.oid AND ref.relname = %(reference)s
        WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
          AND c.relname <> ALL(%(bookkeeping)s)
        ORDER BY c.relname
        """
    )


def secure_table(schema: naming.Identifier, table: str) -> sql.Composed:
    """RLS on, forced, both policies, ``tenant_id`` defaulting to the caller's tenant
    (tenants' privileges follow with ``grant_tenants``)."""
    ids = {
        "table": sql.Identifier(schema, table),
        "current": sql.Identifier(schema, "current_tenant_id"),
        "permissive": sql.Identifier(shared.POLICIES[0]),
        "restrictive": sql.Identifier(shared.POLICIES[1]),
    }
    return sql.SQL(
        """
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} ALTER COLUMN tenant_id SET DEFAULT {current}();
        DROP POLICY IF EXISTS {permissive} ON {table};
        CREATE POLICY {permissive} ON {table} AS PERMISSIVE FOR ALL
            USING (tenant_id = (SELECT {current}()))
            WITH CHECK (tenant_id = (SELECT {current}()));
        DROP POLICY IF EXISTS {restrictive} ON {table};
        CREATE POLICY {restrictive} ON {table} AS RESTRICTIVE FOR ALL
            USING (tenant_id = (SELECT {current}()))
            WITH CHECK (tenant_id = (SELECT {current}()))
        """
    ).format(**ids)


def grant_tenants(space: shared.Space, table: str) -> sql.Composed:
    """Tenants' privileges on a table that is under row-level security (and on the
    space's sequences, which serial and identity columns draw from)."""
    return sql.SQL(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {members}, {pooled};\n"
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {members}, {pooled}"
    ).format(
        table=sql.Identifier(space.schema, table),
        schema=sql.Identifier(space.schema),
        members=sql.Identifier(space.members_role),
        pooled=sql.Identifier(space.pooled_role),
    )


def drop_policies(schema: naming.Identifier, table: str, names: list[str]) -> sql.Composed:
    """Every policy of a table, whatever its name (a Migration may have added its own)."""
    target = sql.Identifier(schema, table)
    return sql.SQL(";\n").join(
        sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(n), target) for n in names
    )


def lock_out(space: shared.Space, table: str) -> sql.Composed:
    """A shared table without ``tenant_id`` cannot be isolated: nobody gets it.

    Privileges go, and forced row-level security with no policy hides every
    row even from a role that is granted access later by mistake.
    """
    table_id = sql.Identifier(space.schema, table)
    return sql.SQL(
        "REVOKE ALL ON {table} FROM {members}, {pooled}, PUBLIC;\n"
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        "ALTER TABLE {table} FORCE ROW LEVEL SECURITY"
    ).format(
        table=table_id,
        members=sql.Identifier(space.members_role),
        pooled=sql.Identifier(space.pooled_role),
    )


def give_to_owner(space: shared.Space, table: str) -> sql.Composed:
    """No tenant role may own a shared table (owners bypass unforced RLS)."""
    return sql.SQL("ALTER TABLE {} OWNER TO {}").format(
        sql.Identifier(space.schema, table), sql.Identifier(space.owner_role)
    )


@dataclass(frozen=True)
class SharedTable:
    """One shared table as the catalogs describe it (a row of ``tables()``)."""

    name: str
    rls: bool
    forced: bool
    has_tenant_id: bool
    policy_names: list[str]
    matching: int
    """Policies equal to the reference table's in every part, not just the name."""
    owner: str
    granted: bool
    """Whether tenants may read it."""

    @property
    def shut(self) -> bool:
        """Row-level security on and forced (owners included)."""
        return self.rls and self.forced

    @property
    def isolated(self) -> bool:
        """Shut, exactly the two isolation policies as installed, and tenants granted it."""
        expected = len(shared.POLICIES)
        policies_right = len(self.policy_names) == self.matching == expected
        return self.shut and policies_right and self.granted


def read_tables(conn: psycopg.Connection[Any], space: shared.Space) -> list[SharedTable]:
    """Every shared table (the bookkeeping tables excepted), in name order."""
    params = {
        "schema": space.schema,
        "reference": shared.REFERENCE_TABLE,
        "bookkeeping": list(shared.BOOKKEEPING_TABLES),
        "members": space.members_role,
    }
    return [SharedTable(*row) for row in conn.execute(tables(), params).fetchall()]


def secure_tables(
    conn: psycopg.Connection[Any], space: shared.Space, as_owner: bool = False
) -> list[str]:
    """Bring every table of the space under the isolation policies; return what was wrong.

    Called inside each shared migration's transaction on the shared owner's
    session (``as_owner``: ownership cannot be fixed from there and is left
    to the operator; a key that would tell one tenant about another's rows
    fails the migration there, see ``refuse_key_leaks``), and by the periodic
    isolation check, so a table added by hand is covered at the latest on the
    next check. The reference table is brought up to date first: it is what
    every table's policies are compared with.
    """
    _secure_reference(conn, space)
    if as_owner:
        refuse_key_leaks(conn, space)
    findings: list[str] = []
    schema = space.schema
    for table in read_tables(conn, space):
        if not table.has_tenant_id:
            if not table.shut or table.granted:
                findings.append(
                    f"shared table {table.name} has no tenant_id column; access revoked"
                )
                conn.execute(lock_out(space, table.name))
            continue
        if table.owner != space.owner_role and not as_owner:
            if not _take_over(conn, space, table):
                findings.append(
                    f"shared table {table.name} is owned by {table.owner}, which the operator"
                    " cannot take over: a superuser must ALTER TABLE ... OWNER TO"
                    f" {space.owner_role}"
                )
                continue
            findings.append(f"shared table {table.name} was owned by {table.owner}")
        if not table.isolated:
            findings.append(
                f"shared table {table.name} lacked forced row-level security or its policies"
            )
            if table.policy_names:
                conn.execute(drop_policies(schema, table.name, table.policy_names))
            conn.execute(secure_table(schema, table.name))
            conn.execute(grant_tenants(space, table.name))
    return findings + (shared_counters(conn, space) if as_owner else [])


def _secure_reference(conn: psycopg.Connection[Any], space: shared.Space) -> None:
    """The reference table carries exactly what ``secure_table`` installs."""
    names = conn.execute(
        "SELECT ARRAY(SELECT polname::text FROM pg_catalog.pg_policy"
        " WHERE polrelid = to_regclass(%s) ORDER BY 1)",
        (sql.Identifier(space.schema, shared.REFERENCE_TABLE).as_string(conn),),
    ).fetchone()
    if names and sorted(names[0]) == sorted(shared.POLICIES):
        return
    if names and names[0]:
        conn.execute(drop_policies(space.schema, shared.REFERENCE_TABLE, list(names[0])))
    conn.execute(secure_table(space.schema, shared.REFERENCE_TABLE))


_KEY_LEAKS = sql.SQL(
    """
    SELECT c.relname::text, i.relname::text
    FROM pg_catalog.pg_index x
    JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
    JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname <> ALL(%(bookkeeping)s)
      AND (x.indisunique OR x.indisexclusion)
      AND (x.indkey[0] = 0 OR NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid
            AND a.attnum = x.indkey[0] AND a.attname = 'tenant_id'))
    ORDER BY 1, 2
    """
)
"""Unique, primary-key and exclusion indexes of shared tables whose first column is not
``tenant_id``: an insert failing on one tells a tenant that another has that value."""


def key_leaks(conn: psycopg.Connection[Any], space: shared.Space) -> list[str]:
    """Each key of the space that spans tenants, said as a finding."""
    params = {"schema": space.schema, "bookkeeping": list(shared.BOOKKEEPING_TABLES)}
    return [
        f"shared table {table} has a unique key {index} that does not start with tenant_id:"
        " a duplicate-key error would tell one tenant what another has"
        for table, index in conn.execute(_KEY_LEAKS, params).fetchall()
    ]


def refuse_key_leaks(conn: psycopg.Connection[Any], space: shared.Space) -> None:
    """Fail the current transaction (a shared migration's) if it left a key spanning
    tenants, with the database's own kind of error so the rollout reports it."""
    leaks = key_leaks(conn, space)
    if not leaks:
        return
    message = "; ".join(leaks) + "; make it UNIQUE (tenant_id, ...)"
    body = (
        "BEGIN RAISE EXCEPTION USING ERRCODE = 'invalid_table_definition', MESSAGE = "
        + sql.Literal(message).as_string(conn)
        + "; END"
    )
    conn.execute(sql.SQL("DO {}").format(sql.Literal(body)))


_SHARED_COUNTERS = sql.SQL(
    """
    SELECT c.relname::text, a.attname::text
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND a.attnum > 0
      AND NOT a.attisdropped AND c.relname <> ALL(%(bookkeeping)s)
      AND (a.attidentity <> ''
           OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%')
    ORDER BY 1, 2
    """
)


def shared_counters(conn: psycopg.Connection[Any], space: shared.Space) -> list[str]:
    """Warnings for identity and serial columns of shared tables: one sequence serves
    every tenant, so the values a tenant gets reveal how many rows the others insert."""
    params = {"schema": space.schema, "bookkeeping": list(shared.BOOKKEEPING_TABLES)}
    return [
        f"warning: shared table {table} column {column} takes its values from a sequence"
        " all tenants share, which reveals other tenants' insert counts; prefer uuid keys"
        for table, column in conn.execute(_SHARED_COUNTERS, params).fetchall()
    ]


def _take_over(conn: psycopg.Connection[Any], space: shared.Space, table: SharedTable) -> bool:
    """Hand a table to the space's owner; False if the operator's role may not."""
    try:
        with conn.transaction():
            conn.execute(give_to_owner(space, table.name))
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
