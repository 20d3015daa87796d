"""Applying, checking or reverting one script on one tenant: the unit of every rollout.

Each call first tries the tenant's lock (``locking.attempt``: a row of the
control schema, which tenants cannot touch, locked by a transaction on an
operator connection), so two operator replicas, or the operator and a
person with the CLI, never work on one tenant at once; a worker that finds
the lock taken returns ``BUSY`` at once and moves on. The lock's
transaction also reads and writes the ledger: the outcome commits as the
lock is released. ``apply`` takes the lock and reads the ledger in one
round trip (``locking.attempt_reading``).

With the lock held the ledger decides first (applied already, drifted,
lower versions missing); only then does ``running`` run the user's SQL, on
a session as the tenant's owner role (``sessions.tenant_session``).
"""

from collections.abc import Callable, Sequence

from psycopg import conninfo

from tenantdb.api import migrations as api
from tenantdb.core import commands, locking, naming, scoping, tenancy
from tenantdb.core import errors as core_errors
from tenantdb.core.migrations import (
    errors,
    ledger,
    markers,
    outcomes,
    running,
    scripts,
    sessions,
)

Outcome = outcomes.Outcome
Result = outcomes.Result
Context = outcomes.Context


def apply(
    ctx: Context,
    target: scoping.TenantLocation,
    script: scripts.Script,
    requires: Sequence[int] = (),
    dry_run: bool = False,
) -> Result:
    """Run ``up`` on one tenant unless the ledger says it is applied, drifted or blocked.

    ``requires``: lower versions that must be applied on this tenant first.
    ``dry_run``: run ``up`` in a transaction that is rolled back; nothing is
    recorded anywhere.
    """
    _check_target(target, script)
    if dry_run and not script.transactional:
        raise errors.InvalidScript(
            "a dry run needs transactional: true (it runs up in a transaction and rolls it back)"
        )
    schema = ctx.server.control_schema
    read = ledger.select_row_and_missing(schema)
    params = ledger.row_and_missing_params(target.uid, script.version, requires)
    with locking.attempt_reading(ctx.server.pool, schema, target.uid, read, params) as held:
        if held is None:
            return Result(target, Outcome.BUSY)
        conn, raw = held
        assert raw is not None  # the LEFT JOIN from one row always yields a row
        row, missing, any_applied = ledger.parse_row_and_missing(raw)
        settled = _settled(target, script, row, missing)
        if settled is not None:
            return settled
        return _on_tenant_session(
            ctx,
            target,
            lambda work: _up(
                running.Run(ctx, conn, work, target, script, row), dry_run, any_applied
            ),
        )


def _up(run: running.Run, dry_run: bool, markers_expected: bool) -> Result:
    """``up`` on the tenant's session, unless its marker says it committed already.

    ``markers_expected``: some version is applied on the tenant, so it has a marker
    table, and most likely none for this version (that takes a crash between the
    tenant's commit and the ledger's). A transactional ``up`` then writes its marker
    without reading the table first (``Run.try_in_transaction``); only if that
    write is what failed is the marker read, as it is otherwise before the change.
    """
    if dry_run:
        return run.dry_run()
    if markers_expected and run.script.transactional:
        tried = run.try_in_transaction()
        if tried is not None:
            return tried
    marker = run.marker()
    if marker is not None and (writers := run.marker_writers()):
        return Result(
            run.target,
            Outcome.DRIFT,
            f"a marker says version {run.script.version} is applied, but the marker table"
            f" {markers.MARKER_TABLE} is writable by {', '.join(writers)}"
            " (not only its owner): revoke that to let the operator trust it",
        )
    if marker == run.script.checksum:  # committed by an attempt the ledger never heard of
        return run.record_applied(0.0, statements_done=0, attempt=True)
    if marker is not None:
        return Result(run.target, Outcome.DRIFT, f"applied with checksum {marker}")
    return run.in_transaction() if run.script.transactional else run.stepwise()


def revert(ctx: Context, target: scoping.TenantLocation, script: scripts.Script) -> Result:
    """Run ``down`` on one tenant where the version is applied and no later one is."""
    _check_target(target, script)
    schema = ctx.server.control_schema
    with locking.attempt(ctx.server.pool, schema, target.uid) as conn:
        if conn is None:
            return Result(target, Outcome.BUSY)
        row = ledger.fetch_row(conn, schema, target.uid, script.version)
        later = ledger.applied_versions(
            conn, schema, [target.uid], script.version, script.scope.value, above=True
        ).get(target.uid, set())
        if row.state is not ledger.State.APPLIED:
            return Result(target, Outcome.NOT_APPLIED)
        if later:
            return Result(target, Outcome.BLOCKED, waiting_for=tuple(sorted(later)))
        if not script.down:
            return Result(target, Outcome.FAILED, "the migration has no down section")
        return _on_tenant_session(
            ctx, target, lambda work: running.Run(ctx, conn, work, target, script, row).down()
        )


def _on_tenant_session(
    ctx: Context, target: scoping.TenantLocation, work: Callable[[sessions.Connection], Result]
) -> Result:
    """``work`` on a session as the target's owner. A login or a statement that fails
    outside the user's SQL means the tenant changed under us (its role or schema just
    went away): nothing ran, and the next pass looks at the registry again."""
    try:
        _ensure_space(ctx, target)
        with sessions.tenant_session(ctx, target) as conn:
            return work(conn)
    except (core_errors.DatabaseError, core_errors.TenantBusy) as exc:
        return Result(target, Outcome.RETRY, str(exc))


def shared_target(server: commands.Server, namespace: str) -> scoping.TenantLocation:
    """The one "tenant" a ``scope: shared`` migration of a namespace runs on: that
    namespace's shared space, as its owner. Its ledger rows and its lock are keyed
    ``shared:<namespace>``, so no namespace reaches another's versions. Naming it
    makes nothing: the space is created when the migration first runs there
    (``apply``)."""
    database = str(conninfo.conninfo_to_dict(server.url).get("dbname") or "")
    space = naming.shared_names(namespace, server.shared_schema)
    return scoping.TenantLocation(
        uid=ledger.shared_uid(namespace),
        name=ledger.SHARED_TARGET,
        namespace=namespace,
        isolation="shared",
        schema_name=space.schema,
        database_name=database,
        owner_role=space.owner_role,
        login_role=space.owner_role,
    )


def _ensure_space(ctx: Context, target: scoping.TenantLocation) -> None:
    """The namespace's shared space exists before a shared migration logs in as its owner."""
    if ledger.is_shared_uid(target.uid):
        tenancy.shared_space(ctx.server, target.namespace)


def _settled(
    target: scoping.TenantLocation, script: scripts.Script, row: ledger.Row, missing: list[int]
) -> Result | None:
    """The outcome when the ledger alone decides: applied, drifted or blocked."""
    if row.state is ledger.State.APPLIED and row.checksum == script.checksum:
        return Result(target, Outcome.ALREADY_APPLIED)
    if row.drifted(script.checksum):
        return Result(target, Outcome.DRIFT, f"applied with checksum {row.checksum}")
    if missing:
        return Result(target, Outcome.BLOCKED, waiting_for=tuple(missing))
    return None


def _check_target(target: scoping.TenantLocation, script: scripts.Script) -> None:
    """Tenant-scope scripts run on schema and database tenants; shared ones on the shared target."""
    is_shared_target = ledger.is_shared_uid(target.uid)
    if is_shared_target and target.uid != ledger.shared_uid(target.namespace):
        raise errors.MigrationError(
            f"the shared target {target.uid} is not namespace {target.namespace}'s"
        )
    if (script.scope is api.Scope.SHARED) != is_shared_target or (
        not is_shared_target and target.isolation == "shared"
    ):
        raise errors.MigrationError(
            f"a {script.scope.value}-scope migration does not run on "
            f"{target.isolation} tenant {target.name}"
        )
