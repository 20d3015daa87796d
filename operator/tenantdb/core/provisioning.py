"""SQL builders for a tenant's roles, schema and grants.

Builders return ``sql.Composed`` and run nothing, so they are unit-tested as
text; ``commands`` executes them. Every name is a validated
``naming.Identifier`` and goes through ``sql.Identifier``; the one value
that is not a name (the password verifier, a timeout) goes through
``sql.Literal``.
"""

from psycopg import sql

from tenantdb.core import connect_group, naming
from tenantdb.settings import PlanLimits

SAFE_ROLE_ATTRIBUTES = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
"""Attributes every tenant role is created with."""
SUPERUSER_ONLY_ATTRIBUTES = ("NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS")
"""What only a superuser may name in ALTER ROLE, even to switch it off. A
non-superuser operator cannot undo such drift; it can only have been made by
a superuser, and the isolation check reports it."""


def safe_attributes(superuser: bool) -> sql.SQL:
    """The attributes set again on each reconcile, so that drift is undone (all of
    them by a superuser operator; CREATEDB and CREATEROLE by one with CREATEROLE)."""
    if superuser:
        return SAFE_ROLE_ATTRIBUTES
    return sql.SQL("NOCREATEDB NOCREATEROLE")


def role_exists() -> sql.SQL:
    """Whether a role exists (parameter: role name)."""
    return sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = %s")


def create_owner_role(
    names: naming.TenantNames, verifier: str, server_version: int
) -> sql.Composed:
    """The role owning the tenant's objects. Only the operator logs in as it (its
    password is derived from the operator's key), to run the tenant's Migrations
    with exactly the owner's rights.

    From PostgreSQL 16 the operator joins it as it is created (``join_operator``'s
    membership, by ``createrole_self_grant`` for this statement alone): the same
    catalog row as the GRANT, without the statement after it that would walk every
    membership of the operator's role again (thousands, one per tenant role).
    """
    create = sql.SQL("CREATE ROLE {} LOGIN NOINHERIT {} PASSWORD {}").format(
        sql.Identifier(names.owner_role), SAFE_ROLE_ATTRIBUTES, sql.Literal(verifier)
    )
    if server_version < 160000:
        return sql.Composed([create])
    return sql.SQL(
        "SET LOCAL createrole_self_grant = 'set, inherit';\n{};\n"
        "SET LOCAL createrole_self_grant = ''"
    ).format(create)


def joins_on_creation(server_version: int) -> bool:
    """Whether ``create_owner_role`` makes the operator a member too (PostgreSQL 16+)."""
    return server_version >= 160000


def allow_login(role: str, verifier: str) -> sql.Composed:
    """Let the operator log in as an owner role (one made NOLOGIN by an older version)."""
    return sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier)
    )


def join_operator(role: str, server_version: int) -> sql.Composed:
    """Make the current user (the operator's role, or the creator that made ``role``,
    ``creators``) a member of ``role``, with its privileges.

    Without superuser, the operator acts for an owner (CREATE SCHEMA ...
    AUTHORIZATION, DROP OWNED BY, ALTER TABLE on its tables) through
    membership. Never the reverse: no tenant role is a member of the
    operator's.
    """
    options = sql.SQL(" WITH INHERIT TRUE, SET TRUE" if server_version >= 160000 else "")
    return sql.SQL("GRANT {} TO CURRENT_USER{}").format(sql.Identifier(role), options)


def act_as_login(owner: str, login: str, server_version: int) -> sql.Composed:
    """The owner may ``SET ROLE`` to its login role (seeders act as the application
    from a session as the owner) without inheriting anything from it."""
    options = sql.SQL(" WITH INHERIT FALSE, SET TRUE" if server_version >= 160000 else "")
    return sql.SQL("GRANT {} TO {}{}").format(sql.Identifier(login), sql.Identifier(owner), options)


def create_login_role(
    names: naming.TenantNames,
    verifier: str,
    limits: PlanLimits,
    suspended: bool,
    inherit: bool = False,
) -> sql.Composed:
    """The LOGIN role the application uses, with its final attributes at once (its
    settings follow, ``configure_login_role``): nobody logs in before the
    transaction that makes it, and everything it needs, commits."""
    return sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
        sql.Identifier(names.login_role),
        login_attributes(limits, suspended, inherit, superuser=True),
        sql.Literal(verifier),
    )


def login_attributes(
    limits: PlanLimits, suspended: bool, inherit: bool, superuser: bool
) -> sql.Composed:
    """Login, inheritance, the safe attributes (``safe_attributes``) and the plan's
    connection limit."""
    return sql.SQL("{} {} {} CONNECTION LIMIT {}").format(
        sql.SQL("NOLOGIN" if suspended else "LOGIN"),
        sql.SQL("INHERIT" if inherit else "NOINHERIT"),
        safe_attributes(superuser),
        sql.Literal(limits.connection_limit),
    )


def set_password(names: naming.TenantNames, verifier: str) -> sql.Composed:
    """Replace the login role's password with a new SCRAM verifier."""
    return sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(names.login_role), sql.Literal(verifier)
    )


def configure_login_role(
    names: naming.TenantNames,
    limits: PlanLimits,
    suspended: bool,
    inherit: bool = False,
    superuser: bool = True,
    created: bool = False,
) -> sql.Composed:
    """Login attributes and the plan's limits on the login role.

    Only shared tenants inherit: their table privileges come from the
    shared-tenants group, the one role they are a member of. A role ``created``
    in the same transaction has its attributes already and no setting to reset.
    """
    login = sql.Identifier(names.login_role)
    statements = [
        sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
            login, sql.Literal(limits.statement_timeout)
        ),
    ]
    if not created:
        attributes = login_attributes(limits, suspended, inherit, superuser)
        statements.insert(0, sql.SQL("ALTER ROLE {} {}").format(login, attributes))
    if limits.work_mem:
        statements.append(
            sql.SQL("ALTER ROLE {} SET work_mem = {}").format(login, sql.Literal(limits.work_mem))
        )
    elif not created:
        statements.append(sql.SQL("ALTER ROLE {} RESET work_mem").format(login))
    return sql.SQL(";\n").join(statements)


def pin_search_path(roles: list[naming.Identifier], schema: str) -> sql.Composed:
    """Sessions of the roles resolve unqualified names in the tenant's schema only."""
    return sql.SQL(";\n").join(
        sql.SQL("ALTER ROLE {} SET search_path = {}").format(
            sql.Identifier(role), sql.Identifier(schema)
        )
        for role in roles
    )


def create_schema(names: naming.TenantNames) -> sql.Composed:
    """The tenant's schema, owned by the owner role."""
    schema, owner = sql.Identifier(names.schema), sql.Identifier(names.owner_role)
    return sql.SQL(
        "CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};\n"
        "ALTER SCHEMA {schema} OWNER TO {owner}"
    ).format(schema=schema, owner=owner)


def grant_schema_access(names: naming.TenantNames, group: str | None = None) -> sql.Composed:
    """What the login role may do: read and write its own schema's objects.

    It creates nothing: tables belong to the owner role (migrations run as
    it), and reach the login role through default privileges. PUBLIC gets
    nothing, nor does the connect ``group`` every tenant inherits from
    (``connect_group``).
    """
    ids = {
        "schema": sql.Identifier(names.schema),
        "owner": sql.Identifier(names.owner_role),
        "login": sql.Identifier(names.login_role),
    }
    return sql.SQL(
        "REVOKE ALL ON SCHEMA {schema} FROM {everyone};\n"
        "GRANT USAGE ON SCHEMA {schema} TO {login};\n"
        "REVOKE CREATE ON SCHEMA {schema} FROM {login};\n"
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {login};\n"
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        " GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {login}"
    ).format(everyone=connect_group.everyone(group), **ids)


def can_connect() -> sql.SQL:
    """Whether a role may connect to a database (parameters: role, database)."""
    return sql.SQL("SELECT has_database_privilege(%s, %s, 'CONNECT')")


def grant_connect(names: naming.TenantNames, database: str, owner: str) -> sql.Composed:
    """Needed only where CONNECT was revoked from PUBLIC on the operator's database."""
    return sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
        sql.Identifier(database), sql.Identifier(names.login_role), sql.Identifier(owner)
    )


def revoke_connect(database: str, roles: list[naming.Identifier]) -> sql.Composed:
    """Take back ``grant_connect`` (the operator granted it: only it may revoke it)."""
    return sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(database), sql.SQL(", ").join(sql.Identifier(r) for r in roles)
    )


def harden_public_schema() -> sql.SQL:
    """No role may create objects in ``public`` (CVE-2018-1058)."""
    return sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def terminate_sessions() -> sql.SQL:
    """End every session of a role (parameter: role name)."""
    return sql.SQL(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = %s AND pid <> pg_backend_pid()"
    )


def memberships() -> sql.SQL:
    """(member, group, whether the member may SET or administer the group) of each role
    that is a member of one (parameter: role names; ``set_option`` is PostgreSQL 16's)."""
    return sql.SQL(
        "SELECT r.rolname, g.rolname, bool_or(m.admin_option"
        " OR COALESCE((to_jsonb(m) ->> 'set_option')::bool, false))"
        " FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = ANY(%s)"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )


def revoke_membership(group: str, role: naming.Identifier) -> sql.Composed:
    """Undo a membership granted behind the operator's back."""
    return sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(role))


def drop_schema(names: naming.TenantNames) -> sql.Composed:
    """The tenant's schema and everything in it."""
    return sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(names.schema))


def drop_roles(roles: list[naming.Identifier]) -> sql.Composed:
    """Every privilege, default privilege and object of the roles, then the roles."""
    idents = sql.SQL(", ").join(sql.Identifier(r) for r in roles)
    return sql.SQL("DROP OWNED BY {roles} CASCADE;\nDROP ROLE {roles}").format(roles=idents)


def disable_login(roles: list[naming.Identifier]) -> sql.Composed:
    """A retained tenant keeps its data but nobody logs in as its roles any more (its
    owner role neither: no Migration runs on a retained tenant)."""
    return sql.SQL("ALTER ROLE {} NOLOGIN").format(
        sql.SQL(" NOLOGIN;\nALTER ROLE ").join(sql.Identifier(r) for r in roles)
    )


def give_to_owner(names: naming.TenantNames, relation: str) -> sql.Composed:
    """Hand an object in the tenant's schema back to the owner role."""
    return sql.SQL("ALTER TABLE {} OWNER TO {}").format(
        sql.Identifier(names.schema, relation), sql.Identifier(names.owner_role)
    )
