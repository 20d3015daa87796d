"""Applying, checking or reverting one script on one tenant: the unit of every rollout.

Each call takes the tenant's advisory lock with ``pg_try_advisory_lock``
(session level, on the operator's database, keyed on the tenant's UID in
the key space provisioning uses), so two operator replicas, or the
operator and a person with the CLI, never work on one tenant at once; a
worker that finds the lock taken returns ``BUSY`` at once and moves on.
The lock is session-level, not transaction-level, so that a
``transactional: false`` script holds it without holding a transaction.

With the lock held the ledger decides first (applied already, drifted,
lower versions missing); only then does ``running`` run the user's SQL.
"""

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo

from tenantdb.api import migrations as api
from tenantdb.core import commands, connecting, naming, scoping, tenancy
from tenantdb.core.migrations import errors, ledger, outcomes, running, scripts, sessions

LOCK_WITH_TIMEOUTS = (
    "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)),"
    " set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)"
)
"""The tenant's transaction-level lock, and the script's timeouts for that transaction."""

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
    if script.transactional and target.isolation != "database":
        return _apply_in_place(ctx, target, script, requires, dry_run)
    return _apply_in_session(ctx, target, script, requires, dry_run)


def _apply_in_session(
    ctx: Context,
    target: scoping.TenantLocation,
    script: scripts.Script,
    requires: Sequence[int],
    dry_run: bool,
) -> Result:
    """``transactional: false`` scripts and ``database`` tenants, under the session-level lock."""
    schema = ctx.server.control_schema
    with connecting.connection(ctx.server.pool) as conn, tenant_lock(conn, target.uid) as mine:
        if not mine:
            return Result(target, Outcome.BUSY)
        with conn.transaction():
            row, missing = ledger.fetch_row_and_missing(
                conn, schema, target.uid, script.version, requires
            )
        settled = _settled(target, script, row, missing)
        if settled is not None:
            return settled
        with sessions.work_connection(ctx, conn, target) as work:
            run = running.Run(ctx, conn, work, target, script, row)
            if dry_run:
                return run.dry_run()
            marker = run.marker()
            if marker == script.checksum:
                return run.record_applied(0.0, statements_done=0, attempt=False)
            if marker is not None:
                return Result(target, Outcome.DRIFT, f"applied with checksum {marker}")
            return run.in_transaction() if script.transactional else run.stepwise()


def _apply_in_place(
    ctx: Context,
    target: scoping.TenantLocation,
    script: scripts.Script,
    requires: Sequence[int],
    dry_run: bool,
) -> Result:
    """The common case, in one transaction on the operator's connection: the tenant's
    transaction-level lock, the ledger read, the change and the ledger write.

    Three round trips of one ``execute`` each: BEGIN, the lock and the
    timeouts, the ledger read and the tenant's scope in one batch
    (``_opening``; the scope is entered optimistically, before the read says
    whether there is work; it vanishes with the transaction if not); then
    the user's SQL; then RESET ROLE, the ledger write and COMMIT in another
    batch (``running.Run.in_place``).
    """
    key = (tenancy.TENANT_LOCK_NAMESPACE, target.uid)
    run: running.Run | None = None
    with connecting.connection(ctx.server.pool) as conn:
        tx = sessions.Transaction(conn)
        try:
            params = (
                *key,
                *sessions.timeouts(script),
                *ledger.row_and_missing_params(target.uid, script.version, requires),
                *sessions.scope(target, ctx.server.shared_schema),
            )
            cursor = sessions.batch(conn, _opening(ctx.server.control_schema), params)
            cursor.nextset()
            locked = cursor.fetchone()
            cursor.nextset()
            found = cursor.fetchone()
            if not (locked and locked[0]):
                return Result(target, Outcome.BUSY)
            assert found is not None
            row, missing = ledger.parse_row_and_missing(found)
            settled = _settled(target, script, row, missing)
            if settled is not None:
                return settled
            run = running.Run(ctx, conn, conn, target, script, row)
            return run.in_place(tx, dry_run)
        except psycopg.Error as exc:
            tx.end(commit=False)
            if run is not None:
                return run.failed_in_place(exc, dry_run, key)
            if sessions.unavailable(exc):
                raise
            # The tenant changed under us (its role or schema just went away):
            # nothing ran; the next pass looks at the registry again.
            return Result(target, Outcome.RETRY, connecting.describe(exc))
        finally:
            tx.end(commit=not dry_run)


@functools.cache
def _opening(schema: naming.Identifier) -> bytes:
    """The first batch of ``_apply_in_place``, built once per control schema.

    Results in order: BEGIN, the lock (first column), the ledger row and
    missing versions, the scope. The read is a statement of its own after
    the lock, and each statement of a simple-protocol batch takes its own
    snapshot, so the read sees whatever the previous holder committed. An
    error anywhere stops the batch with the transaction failed.
    """
    read = ledger.select_row_and_missing(schema).as_bytes(None)
    return b";\n".join((b"BEGIN", LOCK_WITH_TIMEOUTS.encode(), read, sessions.ENTER_SCOPE.encode()))


def revert(ctx: Context, target: scoping.TenantLocation, script: scripts.Script) -> Result:
    """Run ``down`` on one tenant where the version is applied and no later one is."""
    _check_target(target, script)
    schema = ctx.server.control_schema
    with connecting.connection(ctx.server.pool) as conn, tenant_lock(conn, target.uid) as mine:
        if not mine:
            return Result(target, Outcome.BUSY)
        with conn.transaction():
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
        with sessions.work_connection(ctx, conn, target) as work:
            return running.Run(ctx, conn, work, target, script, row).down()


def shared_target(server: commands.Server, namespace: str) -> scoping.TenantLocation:
    """The one "tenant" a ``scope: shared`` migration runs on: the shared schema."""
    database = str(conninfo.conninfo_to_dict(server.url).get("dbname") or "")
    return scoping.TenantLocation(
        uid=ledger.SHARED_TARGET,
        name=ledger.SHARED_TARGET,
        namespace=namespace,
        isolation="shared",
        schema_name=server.shared_schema,
        database_name=database,
        owner_role=scoping.SHARED_OWNER_ROLE,
        login_role=scoping.SHARED_OWNER_ROLE,
    )


@contextmanager
def tenant_lock(conn: psycopg.Connection[Any], uid: str) -> Iterator[bool]:
    """Try the tenant's session-level advisory lock; yield whether we hold it."""
    key = (tenancy.TENANT_LOCK_NAMESPACE, uid)
    row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchone()
    acquired = bool(row and row[0])
    try:
        yield acquired
    finally:
        if acquired and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


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
    is_shared_target = target.uid == ledger.SHARED_TARGET
    if (script.scope is api.Scope.SHARED) != is_shared_target or (
        not is_shared_target and target.isolation == "shared"
    ):
        raise errors.MigrationError(
            f"a {script.scope.value}-scope migration does not run on "
            f"{target.isolation} tenant {target.name}"
        )
