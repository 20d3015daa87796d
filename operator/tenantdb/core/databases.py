"""SQL builders for ``database`` tenants: a database of their own.

CREATE DATABASE cannot run inside a transaction, so the access of PUBLIC is
revoked by the very next statement, before the tenant's login role is
allowed to log in; other tenants can never connect.
"""

from psycopg import sql

from tenantdb.core import connect_group, naming


def exists() -> sql.SQL:
    """Whether a database exists (parameter: name)."""
    return sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s")


def create(names: naming.TenantNames) -> sql.Composed:
    """The tenant's database, owned by its owner role."""
    return sql.SQL("CREATE DATABASE {} OWNER {}").format(
        sql.Identifier(names.database), sql.Identifier(names.owner_role)
    )


def restrict_connect(names: naming.TenantNames, group: str | None = None) -> sql.Composed:
    """Only the tenant's login role (and the operator) may connect: not PUBLIC, nor the
    connect ``group`` every other tenant inherits from (``connect_group``)."""
    ids = {"database": sql.Identifier(names.database), "login": sql.Identifier(names.login_role)}
    return sql.SQL(
        "REVOKE ALL ON DATABASE {database} FROM {everyone};\n"
        "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {login}"
    ).format(everyone=connect_group.everyone(group), **ids)


def prepare_public_schema(names: naming.TenantNames) -> sql.Composed:
    """Inside the tenant's database: ``public`` belongs to the owner role;
    the login role reads and writes the owner's tables but creates nothing."""
    ids = {"owner": sql.Identifier(names.owner_role), "login": sql.Identifier(names.login_role)}
    return sql.SQL(
        "ALTER SCHEMA public OWNER TO {owner};\n"
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
        "GRANT USAGE ON SCHEMA public TO {login};\n"
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {login};\n"
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
        " GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {login}"
    ).format(**ids)


def terminate_connections() -> sql.SQL:
    """End every session on a database (parameter: name)."""
    return sql.SQL(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()"
    )


def drop(names: naming.TenantNames) -> sql.Composed:
    """The tenant's database, whoever is still connected."""
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names.database))


def close_to_public(database: str, roles: list[str]) -> sql.Composed:
    """A database: CONNECT for ``roles``, none for PUBLIC."""
    name = sql.Identifier(database)
    grants = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(name, sql.Identifier(r)) for r in roles
    ]
    revoke = sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(name)
    return sql.SQL(";\n").join([*grants, revoke])
