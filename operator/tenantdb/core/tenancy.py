"""Provisioning and deprovisioning a tenant, for each isolation mode.

What is atomic is explicit: the registry row, the roles, the schema or the
shared-table membership, and the grants commit together, so a refusal (a
domain already taken) leaves nothing behind. A ``database`` tenant needs
CREATE DATABASE, which PostgreSQL runs outside transactions; if that part
fails for a new tenant, what the first transaction made is dropped again.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.types.json import Jsonb

from tenantdb.api.tenants import Isolation
from tenantdb.core import (
    connect_group,
    connecting,
    creators,
    databases,
    errors,
    foreign_keys,
    locking,
    naming,
    passwords,
    pools,
    provisioning,
    registry,
    scoping,
    securing,
    shared,
    spaces,
)
from tenantdb.settings import DatabaseSettings, PlanLimits


@dataclass(frozen=True)
class Server:
    """One PostgreSQL server and where tenantdb keeps its own objects there."""

    pool: psycopg_pool.ConnectionPool
    """The operator's own connections (``pools.open_operator_pool``)."""
    url: str = field(repr=False)
    """The operator's URL with its session pinning (``pools.operator_url``) and its
    password: never printed."""
    control_schema: naming.Identifier
    shared_schema: naming.Identifier
    """The legacy shared schema (``DatabaseSettings.shared_schema``): tenants provisioned
    there by earlier versions stay there; new ones go to their namespace's space."""
    sessions: pools.TenantSessions
    """Connections as tenants' owner roles, for the SQL tenants and users wrote."""

    def close(self) -> None:
        """Close the operator's pool and every idle tenant session."""
        self.sessions.close()
        self.pool.close()


def open_server(db: DatabaseSettings, name: str, max_size: int | None = None) -> Server:
    """The configured server: the operator's pool and the tenant sessions (no I/O yet)."""
    url = pools.operator_url(db.url, db.lock_wait)
    pool = connecting.open_pool(url, db.pool_min_size, max_size or db.pool_max_size, name)
    sessions = pools.TenantSessions(url, db.credentials_key, db.tenant_sessions)
    return Server(
        pool=pool,
        url=url,
        control_schema=naming.identifier(db.control_schema),
        shared_schema=naming.identifier(db.shared_schema),
        sessions=sessions,
    )


@dataclass(frozen=True)
class TenantRequest:
    """What the caller wants a tenant to be."""

    uid: str
    name: str
    namespace: str
    isolation: Isolation
    plan: str
    limits: PlanLimits
    display_name: str | None = None
    domain: str | None = None
    suspended: bool = False
    metadata: dict[str, str] | None = None
    restoring_from: str | None = None
    """The Backup a new tenant's data comes from: until ``registry.restored``, no rollout
    reaches it."""


@dataclass(frozen=True)
class Provisioned:
    """Where the tenant's data lives, for status and the credentials Secret."""

    names: naming.TenantNames
    database: str
    schema: str
    owner_role: str
    token: str | None = field(default=None, repr=False)
    """A shared tenant's token for its space's ``set_tenant`` (a secret)."""


def prepare(server: Server) -> None:
    """Control schema, and every existing shared space brought up to date (the legacy
    one included, where it exists): once per operator start. Spaces of namespaces are
    made on demand (``shared_space``)."""
    with connecting.connection(server.pool) as conn:
        registry.ensure_control_schema(conn, server.control_schema)
        with conn.transaction():
            locking.take(conn, server.control_schema, locking.BOOTSTRAP)
            if _public_schema_open(conn):
                conn.execute(provisioning.harden_public_schema())
            _close_operator_database(conn, server)
            connect_group.prepare(conn, creators.prepare(conn, server.control_schema))
            legacy_owner = shared.LEGACY_OWNER
            spaces.prepare_legacy(conn, server.shared_schema, _owner_verifier(server, legacy_owner))
            for space in spaces.recorded(conn, server.control_schema).values():
                spaces.build(conn, space, _owner_verifier(server, space.owner_role))


def shared_space(server: Server, namespace: str) -> shared.Space:
    """The namespace's shared space, created on first use."""
    owner = naming.shared_names(namespace, server.shared_schema).owner_role
    with connecting.connection(server.pool) as conn:
        return spaces.ensure(
            conn,
            server.control_schema,
            namespace,
            server.shared_schema,
            _owner_verifier(server, owner),
        )


def space_of(server: Server, record: registry.TenantRecord) -> shared.Space:
    """The space a shared tenant's registry row names (its namespace's, or the legacy one)."""
    return shared.space_of(record.schema_name, record.namespace, server.shared_schema)


PasswordSource = Callable[[], str]
"""Where the login role's password is kept (the Tenant's Secret): read under the
tenant's lock, so whichever process sets the role's password last set it to
what the store holds, and two processes provisioning one tenant cannot leave
the role and the store disagreeing."""


def provision(
    server: Server,
    request: TenantRequest,
    password: str | PasswordSource,
    reset_password: bool,
    repairing: bool = False,
) -> Provisioned:
    """Create or converge a tenant; ``password`` is set on creation or when asked.

    A ``PasswordSource`` is called once, under the tenant's lock, and its value is
    always set on the login role (``reset_password`` is then implied). ``repairing``
    converges only a tenant still registered and live, read under its lock, so a
    repair racing the tenant's deletion makes nothing again (``TenantGone``).
    """
    names = naming.tenant_names(request.name, request.uid)
    mode = request.isolation
    space = None
    with connecting.connection(server.pool) as conn:
        home, is_new, recorded = _orient(conn, server, request.uid)
        if repairing and is_new:  # before a shared space could be made for it
            raise errors.TenantGone(f"tenant {request.uid} is no longer registered")
        if mode is Isolation.SHARED:
            space = shared.space_of(recorded, request.namespace, server.shared_schema)
            if space.schema != server.shared_schema:
                space = shared_space(server, request.namespace)  # a second connection
        location = _location(names, mode, home, space)
        owner = space.owner_role if space else None
        register = [] if repairing else [registry.upsert(server.control_schema)]
        reads = [*register, _inspect_query(server.control_schema)]
        inspected = _inspected(conn, names, request.uid, owner)
        params = {**_registered(request, location), **inspected}
        try:
            with locking.hold_reading(
                conn, server.control_schema, request.uid, reads, params
            ) as row:
                state = _state(row)
                group = state.group
                if repairing and not state.registered:
                    raise errors.TenantGone(f"tenant {request.uid} is no longer registered")
                stored = password if isinstance(password, str) else password()
                verifier = passwords.scram_verifier(stored)
                reset = reset_password or not isinstance(password, str)
                creator = state.creator_for(names, request.uid)
                own = [
                    *_role_statements(
                        server, request, names, space, state, verifier, reset, creator
                    ),
                    provisioning.configure_login_role(
                        names,
                        request.limits,
                        request.suspended,
                        inherit=mode is Isolation.SHARED,
                        superuser=state.superuser,
                        created=names.login_role not in state.roles,
                    ),
                    *_own_grants(names, mode, space, state.group),
                    *_group_joins(names, mode, state),
                ]
                statements = [
                    creators.run_as(conn, server.control_schema, creator, own),
                    *_space_statements(names, space, state, request.uid),
                    *_membership_repairs(names, mode, space, state),
                    *_connect_statements(server, names, mode, space, home, state),
                ]
                locking.commit_with(conn, sql.SQL(";\n").join(statements), None)
        except psycopg.errors.UniqueViolation as exc:
            raise _domain_conflict(conn, server.control_schema, request) from exc
        if request.suspended:
            conn.execute(provisioning.terminate_sessions(), (names.login_role,))
        if space is not None:
            row = conn.execute(shared.tenant_token(space), (request.uid,)).fetchone()
            location = dataclasses.replace(location, token=str(row[0]) if row else None)
    if mode is Isolation.DATABASE:
        try:
            _ensure_database(server, names, group, create=not repairing)
        except errors.TenantDBError:
            if is_new:
                deprovision(server, request.uid, request.name, drop=True)
            raise
    return location


def deprovision(server: Server, uid: str, name: str, drop: bool) -> None:
    """Retain (data kept, login disabled) or drop everything a tenant has."""
    names = naming.tenant_names(name, uid)
    with connecting.connection(server.pool) as conn:
        record = registry.load(conn, server.control_schema, uid)
        mode = Isolation(record.isolation) if record else Isolation.SCHEMA
        if drop and mode is Isolation.DATABASE:
            conn.execute(databases.drop(names))
        with conn.transaction():
            locking.take(conn, server.control_schema, uid)
            space = space_of(server, record) if record and mode is Isolation.SHARED else None
            if drop and space is not None:
                _delete_shared_rows(server, conn, uid, space)
            state = _inspect(conn, server.control_schema, names, uid)
            present = state.roles
            existing = [r for r in (names.login_role, names.owner_role) if r in present]
            if names.login_role in existing:
                conn.execute(provisioning.terminate_sessions(), (names.login_role,))
            if not drop:
                if existing:
                    conn.execute(
                        _as_creator(conn, server, state, [provisioning.disable_login(existing)])
                    )
                conn.execute(registry.mark_retained(server.control_schema), (uid,))
                return
            if space is not None:
                conn.execute(shared.unmap_role(space.schema), (names.login_role,))
            granted = [r for r in existing if r in state.direct]
            if granted:  # the catalog row tenants provisioned in parallel write too
                locking.take(conn, server.control_schema, locking.BOOTSTRAP)
                conn.execute(provisioning.revoke_connect(conn.info.dbname, granted))
            conn.execute(_as_creator(conn, server, state, _drops(names, existing, state)))
            conn.execute(registry.forget(server.control_schema), (uid,))


def _drops(
    names: naming.TenantNames, existing: list[naming.Identifier], state: "_State"
) -> list[sql.Composable]:
    """The schema, then the roles with what they own and were granted: the one dropping
    them takes their privileges first, as DROP OWNED asks. (DROP OWNED revokes only
    what its runner may revoke: the operator's own grants, CONNECT on its database given
    before ``connect_group``, go before, ``provisioning.revoke_connect``; DROP ROLE ends
    the roles' memberships, the connect group's too.)"""
    joins = [provisioning.join_operator(role, state.server_version) for role in existing]
    roles = [provisioning.drop_roles(existing)] if existing else []
    return [provisioning.drop_schema(names), *joins, *roles]


def _as_creator(
    conn: psycopg.Connection[Any], server: Server, state: "_State", statements: list[sql.Composable]
) -> sql.Composed:
    """Statements on a tenant's existing roles, run by whoever made them (``creators``)."""
    return creators.run_as(conn, server.control_schema, state.creator, statements)


def list_tenants(
    server: Server, namespace: str | None = None
) -> list[tuple[registry.TenantRecord, bool]]:
    """The tenant registry as the operator and the CLI read it: (record, retained)."""
    with connecting.connection(server.pool) as conn:
        rows = conn.execute(registry.listing(server.control_schema), {"namespace": namespace})
        return [(registry.TenantRecord(*row[:-1]), bool(row[-1])) for row in rows.fetchall()]


def rotate_password(server: Server, name: str, uid: str, password: str) -> None:
    """Give the login role a new password (sent as a SCRAM verifier)."""
    names = naming.tenant_names(name, uid)
    with connecting.connection(server.pool) as conn, conn.transaction():
        locking.take(conn, server.control_schema, uid)
        conn.execute(provisioning.set_password(names, passwords.scram_verifier(password)))


def _location(
    names: naming.TenantNames, mode: Isolation, home: str, space: shared.Space | None
) -> Provisioned:
    if space is not None:
        return Provisioned(names, home, space.schema, space.owner_role)
    if mode is Isolation.DATABASE:
        return Provisioned(names, names.database, "public", names.owner_role)
    return Provisioned(names, home, names.schema, names.owner_role)


@dataclass(frozen=True)
class _State:
    """What exists already, read once inside the provisioning transaction."""

    roles: frozenset[str]
    public_connects: bool
    connecting: frozenset[str]
    """The tenant's roles that may connect to the operator's database already."""
    direct: frozenset[str]
    """The tenant's roles granted CONNECT on it of their own (before ``connect_group``),
    by the operator or the database's owner, so the operator may take it back."""
    group: str | None
    """The connect group (``connect_group``) where it exists."""
    group_connects: bool
    """Whether CONNECT on the operator's database is granted to the group itself."""
    registered: bool
    """Whether the registry holds the tenant, not retained."""
    memberships: frozenset[tuple[str, str]]
    """(member, group) of the tenant's roles, for groups the operator may revoke from
    (those it administers: the others, like ``pg_read_all_data``, only a superuser can;
    the isolation check reports them)."""
    server_version: int
    superuser: bool
    """Whether the operator's own role is a superuser."""
    creator: str | None
    """The function of the creator that made the login role (``creators``), if one did."""
    picked_ready: bool
    """Whether the creator a new tenant would get (``creators.pick``) exists."""

    @property
    def through_group(self) -> str | None:
        """The connect group, where tenants connect through it (it has CONNECT)."""
        return self.group if self.group_connects else None

    def creator_for(self, names: naming.TenantNames, uid: str) -> str | None:
        """Whose the tenant's roles are: their creator's once made, else the picked
        one where it exists; ``None`` is the operator's own role."""
        if names.login_role in self.roles:
            return self.creator
        return creators.pick(uid) if self.picked_ready else None


def _inspect_query(control: naming.Identifier) -> sql.Composed:
    """What ``_State`` holds, in one statement.

    The tenant's creator (``creators``) is the one whose function's owner holds ADMIN
    OPTION on its login role; memberships are those that creator, or else the
    operator, administers (and, beside a creator's, those the operator administers
    itself: a shared space's group, the connect group).
    """
    return sql.SQL(
        """
        WITH creator AS (
            SELECT p.proname::text AS function, p.proowner AS role FROM pg_proc p
              JOIN pg_auth_members a ON a.member = p.proowner AND a.admin_option
              JOIN pg_roles l ON l.oid = a.roleid
             WHERE p.pronamespace = to_regnamespace({control}) AND l.rolname = %(login)s
               AND starts_with(p.proname, 'as_creator_') LIMIT 1
        ), me AS (SELECT oid FROM pg_roles WHERE rolname = current_user)
        SELECT ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%(roles)s)),
               has_database_privilege('public', current_database(), 'CONNECT'),
               ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%(connecting)s)
                     AND has_database_privilege(oid, current_database(), 'CONNECT')),
               ARRAY(SELECT ARRAY[r.rolname::text, g.rolname::text] FROM pg_auth_members m
                     JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
                     WHERE r.rolname = ANY(%(roles)s)
                     AND (pg_has_role(COALESCE((SELECT role FROM creator), (SELECT oid FROM me)),
                                      g.oid, 'MEMBER WITH ADMIN OPTION')
                          OR EXISTS (SELECT 1 FROM pg_auth_members d WHERE d.roleid = g.oid
                                     AND d.member = (SELECT oid FROM me) AND d.admin_option))),
               current_setting('server_version_num')::int,
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
               (SELECT function FROM creator),
               to_regprocedure(format('%%I.%%I(text)', {control}, %(picked)s::text)) IS NOT NULL,
               ARRAY(SELECT r.rolname::text FROM pg_roles r, pg_database d, aclexplode(d.datacl) a
                     WHERE d.datname = current_database() AND r.rolname = ANY(%(connecting)s)
                       AND a.grantee = r.oid AND a.privilege_type = 'CONNECT'
                       AND a.grantor IN (d.datdba, (SELECT oid FROM me))),
               (SELECT rolname::text FROM pg_roles WHERE rolname = %(group)s),
               EXISTS (SELECT 1 FROM pg_roles g, pg_database d, aclexplode(d.datacl) a
                       WHERE g.rolname = %(group)s AND d.datname = current_database()
                         AND a.grantee = g.oid AND a.privilege_type = 'CONNECT'),
               EXISTS (SELECT 1 FROM {tenants} WHERE uid = %(uid)s AND retained_at IS NULL)
        """
    ).format(control=sql.Literal(control), tenants=sql.Identifier(control, "tenants"))


def _inspect(
    conn: psycopg.Connection[Any], control: naming.Identifier, names: naming.TenantNames, uid: str
) -> _State:
    """One round trip instead of one per check: roles, CONNECT, memberships, creator."""
    params = _inspected(conn, names, uid)
    return _state(conn.execute(_inspect_query(control), params).fetchone())


def _inspected(
    conn: psycopg.Connection[Any], names: naming.TenantNames, uid: str, owner: str | None = None
) -> dict[str, Any]:
    """``_inspect_query``'s parameters: CONNECT is that of the login role and ``owner``
    (the tenant's own by default); ``picked`` the creator a new tenant would get."""
    roles = [names.login_role, names.owner_role]
    return {
        "roles": roles,
        "login": names.login_role,
        "connecting": [names.login_role, owner or names.owner_role],
        "picked": creators.pick(uid),
        "group": connect_group.role_name(conn.info.user),
        "uid": uid,
    }


def _state(row: tuple[Any, ...] | None) -> _State:
    assert row is not None
    roles, public_connects, connects, pairs, version, superuser, creator, picked_ready = row[:8]
    direct, group, group_connects, registered = row[8:]
    memberships = frozenset((member, group) for member, group in pairs)
    return _State(
        roles=frozenset(roles),
        public_connects=bool(public_connects),
        connecting=frozenset(connects),
        direct=frozenset(direct),
        group=group if int(version) >= connect_group.FIRST_VERSION else None,
        group_connects=bool(group_connects),
        registered=bool(registered),
        memberships=memberships,
        server_version=int(version),
        superuser=superuser,
        creator=creator,
        picked_ready=bool(picked_ready),
    )


def _role_statements(
    server: Server,
    request: TenantRequest,
    names: naming.TenantNames,
    space: shared.Space | None,
    state: _State,
    verifier: str,
    reset_password: bool,
    creator: str | None,
) -> list[sql.Composable]:
    """The roles, and the memberships that let the operator act for the owner (through
    the ``creator``, if any, which joins what it makes) and the owner act as the login
    role (seeders; never the other way round). A shared tenant's owner is its space's:
    that owner may act as its own namespace's tenants only."""
    owner = names.owner_role if space is None else space.owner_role
    version = state.server_version
    statements: list[sql.Composable] = []
    joined = False
    if space is None and names.owner_role not in state.roles:
        owner_verifier = _owner_verifier(server, names.owner_role)
        statements.append(provisioning.create_owner_role(names, owner_verifier, version))
        joined = provisioning.joins_on_creation(version)
    if names.login_role not in state.roles:
        inherit = request.isolation is Isolation.SHARED
        statements.append(
            provisioning.create_login_role(
                names, verifier, request.limits, request.suspended, inherit
            )
        )
    elif reset_password:
        statements.append(provisioning.set_password(names, verifier))
    if space is None and not joined and creator is None:
        statements.append(provisioning.join_operator(names.owner_role, version))
    statements.append(provisioning.act_as_login(owner, names.login_role, version))
    return statements


def _owner_verifier(server: Server, role: str) -> str:
    """The SCRAM verifier of an owner role's derived password."""
    password = passwords.role_password(server.sessions.key, role)
    return passwords.scram_verifier(password, iterations=passwords.ROLE_SCRAM_ITERATIONS)


def _own_grants(
    names: naming.TenantNames, mode: Isolation, space: shared.Space | None, group: str | None
) -> list[sql.Composable]:
    """The tenant's schema and its roles' settings: statements on the tenant's own
    roles, run as their creator."""
    if mode is Isolation.SCHEMA:
        return [
            provisioning.create_schema(names),
            provisioning.grant_schema_access(names, group),
            provisioning.pin_search_path([names.login_role, names.owner_role], names.schema),
        ]
    if space is not None:
        return [provisioning.pin_search_path([names.login_role], space.schema)]
    return [provisioning.pin_search_path([names.login_role, names.owner_role], "public")]


def _space_statements(
    names: naming.TenantNames, space: shared.Space | None, state: _State, uid: str
) -> list[sql.Composable]:
    """A shared tenant's place in its space, whose roles are the operator's own."""
    if space is None:
        return []
    return [
        shared.join_members(space, names.login_role, state.server_version),
        shared.map_role(space.schema, names.login_role, uid),
    ]


def _connecting_roles(names: naming.TenantNames, mode: Isolation) -> list[str]:
    """The tenant's own roles that connect to the operator's database: none for a
    ``database`` tenant; a shared tenant's owner is its space's, which gets CONNECT
    with its space (``spaces.grant_connect``)."""
    if mode is Isolation.DATABASE:
        return []
    if mode is Isolation.SHARED:
        return [names.login_role]
    return [names.login_role, names.owner_role]


def _group_joins(names: naming.TenantNames, mode: Isolation, state: _State) -> list[sql.Composable]:
    """The tenant's roles join the connect group, where it has CONNECT (run as their
    creator, which administers the group: ``connect_group``)."""
    group = state.through_group
    if group is None:
        return []
    joining = [r for r in _connecting_roles(names, mode) if (r, group) not in state.memberships]
    return [connect_group.join(group, joining)] if joining else []


def _connect_statements(
    server: Server,
    names: naming.TenantNames,
    mode: Isolation,
    space: shared.Space | None,
    home: str,
    state: _State,
) -> list[sql.Composable]:
    """CONNECT on the operator's database, last in the batch: through the connect group
    where it has it (``_group_joins``; a tenant's own grant from before is taken back),
    else for the roles that lack it (only where it was revoked from PUBLIC).

    A GRANT or REVOKE rewrites the database's catalog row, which tenants provisioned
    in parallel would otherwise collide on ("tuple concurrently updated"), so it
    holds the bootstrap lock from there to the commit: last, it is held for the
    grant and the commit only, and a tenant whose roles connect already (every
    reconcile but the first; with the group, every one) takes it not at all.
    """
    owner = names.owner_role if space is None else space.owner_role
    if mode is Isolation.DATABASE:
        return []
    if state.through_group is not None:
        own = _connecting_roles(names, mode)  # not a space's owner: it keeps its own
        granted = [naming.Identifier(r) for r in own if r in state.direct]
        if not granted:
            return []
        return [
            locking.take_statement(server.control_schema, locking.BOOTSTRAP),
            provisioning.revoke_connect(home, granted),
        ]
    if state.public_connects:
        return []
    if {names.login_role, owner} <= state.connecting:
        return []
    return [
        locking.take_statement(server.control_schema, locking.BOOTSTRAP),
        provisioning.grant_connect(names, home, owner),
    ]


def _membership_repairs(
    names: naming.TenantNames, mode: Isolation, space: shared.Space | None, state: _State
) -> list[sql.Composable]:
    """A tenant role is a member of nothing but its space's tenants group (shared mode),
    and the owner of its own login role."""
    allowed = allowed_memberships(names, mode, space, state.group)
    return [
        provisioning.revoke_membership(group, naming.Identifier(member))
        for member, group in sorted(state.memberships)
        if (member, group) not in allowed
    ]


def allowed_memberships(
    names: naming.TenantNames, mode: Isolation, space: shared.Space | None, group: str | None
) -> set[tuple[str, str]]:
    """(member, group) pairs a tenant's roles may have: the connect ``group``'s too."""
    joined = {(role, group) for role in _connecting_roles(names, mode)} if group else set()
    if mode is Isolation.SHARED:
        return joined | ({(names.login_role, space.members_role)} if space else set())
    return joined | {(names.owner_role, names.login_role)}


def _ensure_database(
    server: Server, names: naming.TenantNames, group: str | None, create: bool
) -> None:
    """CREATE DATABASE (outside any transaction; never for a repair, which a deletion
    dropping the database may have raced), then lock it down at once."""
    with connecting.connection(server.pool) as conn:
        if conn.execute(databases.exists(), (names.database,)).fetchone() is None:
            if not create:
                return  # the isolation check reports it missing
            conn.execute(databases.create(names))
        conn.execute(databases.restrict_connect(names, group))
        conn.execute(databases.terminate_connections(), (names.database,))
    with (
        pools.operator_connection(server.url, names.database) as tenant_db,
        tenant_db.transaction(),
    ):
        tenant_db.execute(databases.prepare_public_schema(names))


def _delete_shared_rows(
    server: Server, conn: psycopg.Connection[Any], uid: str, space: shared.Space
) -> None:
    """A shared tenant's rows, deleted by the tenant itself: on a session as its space's
    owner narrowed to the tenant's login role, so row-level security picks the rows and
    any trigger on the tables runs with no more than the tenant's rights."""
    location = scoping.load(conn, server.control_schema, uid)
    tables = [
        t.name
        for t in securing.read_tables(conn, space)
        if t.has_tenant_id and location and _may_delete(conn, space, location.login_role, t.name)
    ]
    if not tables or location is None:
        return
    login, database = scoping.session_login(location)
    with (
        connecting.translated_errors(),
        server.sessions.session(login, database) as work,
        work.transaction(),
    ):
        try:
            ordered = foreign_keys.foreign_key_order(work, space.schema, tables)
        except foreign_keys.ForeignKeyCycle:
            ordered = tables  # the tables' own ON DELETE rules decide
        scoping.enter(work, location, "login", server.shared_schema)
        for table in reversed(ordered):  # children before the rows they reference
            work.execute(shared.delete_rows(space.schema, table))


def _may_delete(conn: psycopg.Connection[Any], space: shared.Space, role: str, table: str) -> bool:
    """Whether a tenant may delete its rows of a shared table (a table a superuser made
    by hand and never handed over grants nothing; the isolation check reports it)."""
    qualified = sql.Identifier(space.schema, table).as_string(conn)
    row = conn.execute("SELECT has_table_privilege(%s, %s, 'DELETE')", (role, qualified))
    found = row.fetchone()
    return bool(found and found[0])


def _orient(
    conn: psycopg.Connection[Any], server: Server, uid: str
) -> tuple[str, bool, str | None]:
    """The operator's database, whether the tenant is new, and the schema its registry
    row names (one round trip)."""
    query = sql.SQL(
        "SELECT current_database(), NOT EXISTS ({fetch}), (SELECT r.schema_name FROM ({fetch}) r)"
    ).format(fetch=registry.fetch(server.control_schema))
    row = conn.execute(query, (uid, uid)).fetchone()
    assert row is not None
    return str(row[0]), bool(row[1]), row[2]


def _registered(request: TenantRequest, location: Provisioned) -> dict[str, Any]:
    """``registry.upsert``'s parameters for the tenant."""
    record = registry.TenantRecord(
        uid=request.uid,
        name=request.name,
        namespace=request.namespace,
        display_name=request.display_name,
        domain=request.domain,
        isolation=request.isolation.value,
        schema_name=location.schema,
        database_name=location.database,
        owner_role=location.owner_role,
        login_role=location.names.login_role,
        plan=request.plan,
        suspended=request.suspended,
        metadata=dict(request.metadata or {}),
    )
    return {
        **asdict(record),
        "metadata": Jsonb(record.metadata),
        "restoring_from": request.restoring_from,
    }


def _close_operator_database(conn: psycopg.Connection[Any], server: Server) -> None:
    """Only tenants that live here may connect to the operator's database.

    By default PUBLIC may connect to every database, so a ``database``
    tenant could open the operator's and read its catalogs (every schema
    tenant's name). The live tenants of the other modes get CONNECT of their
    own first, so nobody who needs it loses it; the shared spaces' owners and
    pooled groups get theirs as ``spaces.build`` runs next.
    """
    row = conn.execute(
        "SELECT datname, has_database_privilege('public', oid, 'CONNECT'),"
        " pg_has_role(current_user, datdba, 'USAGE')"
        " FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    if row is None or not row[1] or not row[2]:
        return  # closed already, or not ours to close (``privileges`` reports it)
    roles = registry.local_roles(conn, server.control_schema)
    conn.execute(databases.close_to_public(str(row[0]), roles))


def _public_schema_open(conn: psycopg.Connection[Any]) -> bool:
    """Whether PUBLIC may still create objects in ``public`` (CVE-2018-1058)."""
    row = conn.execute(
        "SELECT has_schema_privilege('public', 'public', 'CREATE')"
        " FROM pg_namespace WHERE nspname = 'public'"
    ).fetchone()
    return bool(row and row[0])


def _domain_conflict(
    conn: psycopg.Connection[Any], control_schema: naming.Identifier, request: TenantRequest
) -> errors.TenantDBError:
    row = conn.execute(
        registry.domain_owner(control_schema), (request.domain, request.uid)
    ).fetchone()
    holder = f" by tenant {row[0]}" if row else ""
    return errors.DomainConflict(f"domain {request.domain!r} is already used{holder}")
