"""The migration operations both the CLI and the controllers call.

Plain functions on a ``Server`` and plain values, after Alembic's
``command`` module: ``targets`` (who a migration may run on), ``progress``
(the ledger's view of them, one query), ``upgrade``/``downgrade`` (a
rollout), ``catch_up`` (every earlier migration for one tenant),
``accept_checksum`` (the drift override), ``retry_failures``, ``status``
and ``history`` (for ``tenantdb migrate status``). They raise only
``errors`` classes and know nothing about Kubernetes.
"""

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from tenantdb.api import migrations as api
from tenantdb.core import commands, connecting, scoping
from tenantdb.core.migrations import engine, errors, ledger, planning, rollout, scripts

Outcome = engine.Outcome
CHECK_TIMEOUTS = (
    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)"
)
"""The script's timeouts, set in a transaction that is rolled back: does the server take them?"""


def targets(
    server: commands.Server,
    namespace: str,
    scope: api.Scope,
    uids: Collection[str] | None = None,
) -> list[scoping.TenantLocation]:
    """Who a migration of this scope may run on, in name order.

    ``tenant``: the live ``schema`` and ``database`` tenants of the namespace
    (``shared`` tenants live in the shared tables), limited to ``uids`` if
    given. ``shared``: the namespace's shared space, once.
    """
    if scope is api.Scope.SHARED:
        return [engine.shared_target(server, namespace)]
    with connecting.connection(server.pool) as conn:
        live = scoping.live_tenants(conn, server.control_schema, namespace)
    wanted = None if uids is None else set(uids)
    return [t for t in live if t.isolation != "shared" and (wanted is None or t.uid in wanted)]


@dataclass(frozen=True)
class Progress:
    """The ledger rows of one version for a set of targets."""

    targets: Sequence[scoping.TenantLocation]
    rows: Mapping[str, ledger.Row]
    checksum: str
    found_drift: Mapping[str, str] = field(default_factory=dict)
    """Tenant name -> why, for drift a pass found on the tenant itself (a marker the
    ledger never wrote): nothing ran there, so no ledger row can say it."""

    def with_drift(self, found: Mapping[str, str]) -> "Progress":
        """These counts, with the drift a pass found kept in them (``found_drift``)."""
        return replace(self, found_drift={**self.found_drift, **found})

    def row(self, uid: str) -> ledger.Row:
        """One target's row (state None: never attempted)."""
        return self.rows.get(uid) or ledger.Row(uid, None)

    def pending(self, mode: planning.Mode) -> list[scoping.TenantLocation]:
        """Targets with work left that runs without a person's say-so."""
        return [t for t in self.targets if _pending(self.row(t.uid), mode, self.checksum)]

    def counts(self, mode: planning.Mode) -> planning.Counts:
        """Totals for status; a rollback counts the tenants the version was applied to."""
        rows = [self.row(t.uid) for t in self.targets]
        names = {t.uid: t.name for t in self.targets}
        if mode is planning.Mode.ROLLBACK:
            had = [r for r in rows if r.state in (ledger.State.APPLIED, ledger.State.ROLLED_BACK)]
            still = [r for r in had if r.state is ledger.State.APPLIED]
            failed = sum(1 for r in still if r.rollback_failed)
            return planning.Counts(len(had), len(still), failed, len(still) - failed)
        applied = sum(1 for r in rows if r.state is ledger.State.APPLIED)
        failed = sum(1 for r in rows if r.state is ledger.State.FAILED)
        in_ledger = {names[r.tenant_uid] for r in rows if r.drifted(self.checksum)}
        drifted = sorted(in_ledger | set(self.found_drift))
        retrying = [
            (names[r.tenant_uid], r.error)
            for r in rows
            if r.state is ledger.State.RETRY and r.error
        ]
        pending = len(rows) - applied - failed - len(set(self.found_drift) - in_ledger)
        return planning.Counts(
            len(rows),
            applied,
            failed,
            pending,
            drifted,
            sorted(retrying)[: planning.RETRYING_LISTED],
        )

    def failures(self, mode: planning.Mode, limit: int = 20) -> list[tuple[str, str]]:
        """(tenant name, error) of failed targets, by name."""
        found = []
        for target in self.targets:
            row = self.row(target.uid)
            failed = (
                row.rollback_failed
                if mode is planning.Mode.ROLLBACK
                else row.state is ledger.State.FAILED
            )
            if failed:
                found.append((target.name, row.error or "failed"))
            elif mode is not planning.Mode.ROLLBACK and target.name in self.found_drift:
                found.append((target.name, self.found_drift[target.name]))
        return found[:limit]


def _pending(row: ledger.Row, mode: planning.Mode, checksum: str) -> bool:
    if mode is planning.Mode.ROLLBACK:
        return row.state is ledger.State.APPLIED and not row.rollback_failed
    if row.drifted(checksum):
        return False
    return row.state in (None, ledger.State.RETRY, ledger.State.RUNNING, ledger.State.ROLLED_BACK)


def progress(
    server: commands.Server, script: scripts.Script, where: Sequence[scoping.TenantLocation]
) -> Progress:
    """The ledger's view of a rollout: one query, whatever the number of tenants."""
    with connecting.connection(server.pool) as conn:
        rows = ledger.fetch_rows(
            conn, server.control_schema, [t.uid for t in where], script.version
        )
    return Progress(where, rows, script.checksum)


def missing_versions(
    server: commands.Server,
    script: scripts.Script,
    required: Mapping[str, Sequence[int]],
) -> dict[str, list[int]]:
    """For each tenant UID, the required lower versions it lacks (one query)."""
    wanted = {uid: versions for uid, versions in required.items() if versions}
    if not wanted:
        return {}
    with connecting.connection(server.pool) as conn:
        applied = ledger.applied_versions(
            conn, server.control_schema, list(wanted), script.version, script.scope.value
        )
    gaps = {uid: sorted(set(v) - applied.get(uid, set())) for uid, v in wanted.items()}
    return {uid: gap for uid, gap in gaps.items() if gap}


def later_versions(
    server: commands.Server, script: scripts.Script, uids: Sequence[str]
) -> dict[str, set[int]]:
    """For each tenant UID, the versions above this one still applied (one query)."""
    if not uids:
        return {}
    with connecting.connection(server.pool) as conn:
        return ledger.applied_versions(
            conn, server.control_schema, uids, script.version, script.scope.value, above=True
        )


def upgrade(
    server: commands.Server,
    script: scripts.Script,
    where: Sequence[scoping.TenantLocation],
    *,
    applied_by: str,
    policy: rollout.Policy,
    requires: Mapping[str, Sequence[int]] | None = None,
    dry_run: bool = False,
    on_result: rollout.Listener | None = None,
    stop: threading.Event | None = None,
) -> rollout.Report:
    """Apply (or dry-run) one script on many tenants under a rollout policy."""
    _refuse_unsafe(script)
    check_timeouts(server, script)
    ctx = engine.Context(server, applied_by)
    needs = requires or {}

    def work(target: scoping.TenantLocation) -> engine.Result:
        return engine.apply(ctx, target, script, needs.get(target.uid, ()), dry_run=dry_run)

    return rollout.run(where, work, policy, on_result, stop)


def downgrade(
    server: commands.Server,
    script: scripts.Script,
    where: Sequence[scoping.TenantLocation],
    *,
    applied_by: str,
    policy: rollout.Policy,
    on_result: rollout.Listener | None = None,
    stop: threading.Event | None = None,
) -> rollout.Report:
    """Run one script's ``down`` on many tenants (each refuses while later versions remain)."""
    _refuse_unsafe(script)
    check_timeouts(server, script)
    ctx = engine.Context(server, applied_by)
    return rollout.run(where, lambda t: engine.revert(ctx, t, script), policy, on_result, stop)


def catch_up(
    server: commands.Server,
    plan: Sequence[scripts.Script],
    tenant_uid: str,
    applied_by: str,
    held_by: planning.Declared | None = None,
) -> int | None:
    """Apply every script of ``plan`` (in version order) the tenant lacks; return its version.

    Raises ``TenantBusy`` or ``Waiting`` (retry soon) and ``TenantFailed``
    (with the database's message) when a script does not apply, and
    ``HeldBack`` (retry) when the tenant lacks ``held_by``, the halted
    Migration where ``plan`` stops.
    """
    with connecting.connection(server.pool) as conn:
        location = scoping.load(conn, server.control_schema, tenant_uid)
        if location is not None and location.isolation != "shared" and not plan and not held_by:
            return _highest_applied(conn, server, tenant_uid, api.Scope.TENANT)  # one checkout
    if location is None:
        return None
    if location.isolation == "shared":
        return tenant_version(server, shared_uid_of(server, location), api.Scope.SHARED)
    ctx = engine.Context(server, applied_by)
    done: list[int] = []
    for script in sorted(plan, key=lambda s: s.version):
        _refuse_unsafe(script)
        check_timeouts(server, script)
        result = engine.apply(ctx, location, script, requires=done)
        if result.outcome in (Outcome.BUSY, Outcome.RETRY, Outcome.BLOCKED):
            problem = errors.TenantBusy if result.outcome is Outcome.BUSY else errors.Waiting
            detail = result.error or result.outcome.value
            raise problem(f"migration {script.version} ({script.name}): {detail}")
        if result.outcome is Outcome.FAILED:
            raise errors.TenantFailed(
                f"migration {script.version} ({script.name}) failed: {result.error}"
            )
        done.append(script.version)
    if held_by is not None:
        with connecting.connection(server.pool) as conn:
            row = ledger.fetch_row(conn, server.control_schema, tenant_uid, held_by.version)
        if row.state is not ledger.State.APPLIED:
            why = f" ({held_by.why})" if held_by.why else ""
            raise errors.HeldBack(
                f"Migration {held_by.name} (version {held_by.version}) is halted{why} and this "
                "tenant does not have it yet; it catches up, and becomes Ready, once that "
                "Migration is fixed, accepted or rolled back"
            )
    return tenant_version(server, tenant_uid, api.Scope.TENANT)


def shared_uid_of(server: commands.Server, location: scoping.TenantLocation) -> str:
    """The ledger uid whose versions a shared tenant has: its namespace's shared space,
    or the legacy ``shared`` rows for a tenant still in the legacy schema."""
    if location.schema_name == server.shared_schema:
        return ledger.SHARED_TARGET
    return ledger.shared_uid(location.namespace)


def tenant_version(server: commands.Server, uid: str, scope: api.Scope) -> int | None:
    """The highest version applied to a tenant (one query)."""
    with connecting.connection(server.pool) as conn:
        return _highest_applied(conn, server, uid, scope)


def _highest_applied(
    conn: psycopg.Connection[Any], server: commands.Server, uid: str, scope: api.Scope
) -> int | None:
    row = conn.execute(ledger.highest_applied(server.control_schema), (uid, scope.value))
    found = row.fetchone()
    return int(found[0]) if found and found[0] is not None else None


def has_applied(server: commands.Server, uid: str, versions: Collection[int]) -> bool:
    """Whether every one of ``versions`` (tenant scope) is applied to a tenant (one query)."""
    if not versions:
        return True
    with connecting.connection(server.pool) as conn:
        found = ledger.applied_versions(
            conn, server.control_schema, [uid], max(versions) + 1, api.Scope.TENANT.value
        )
    return set(versions) <= found.get(uid, set())


def accept_checksum(
    server: commands.Server, script: scripts.Script, where: Sequence[scoping.TenantLocation]
) -> int:
    """Declare the current text applied where another one was (the drift override)."""
    with connecting.connection(server.pool) as conn, conn.transaction():
        cur = conn.execute(
            ledger.accept_checksum(server.control_schema),
            (script.checksum, script.version, [t.uid for t in where], script.checksum),
        )
        return cur.rowcount


def retry_failures(
    server: commands.Server, version: int, where: Sequence[scoping.TenantLocation]
) -> int:
    """Make the failed tenants of one version eligible again; return how many."""
    with connecting.connection(server.pool) as conn, conn.transaction():
        cur = conn.execute(
            ledger.reset_failures(server.control_schema), (version, [t.uid for t in where])
        )
        return cur.rowcount


def status(server: commands.Server, namespace: str | None) -> list[dict[str, Any]]:
    """Per version: applied, failed, retrying and rolled-back counts (live tenants)."""
    with connecting.connection(server.pool) as conn:
        return ledger.summarise(conn, server.control_schema, namespace)


def history(server: commands.Server, namespace: str | None, tenant: str) -> list[dict[str, Any]]:
    """Every ledger row of the tenant(s) of that name."""
    with connecting.connection(server.pool) as conn:
        return ledger.tenant_history(conn, server.control_schema, namespace, tenant)


def check_timeouts(server: commands.Server, script: scripts.Script) -> None:
    """``InvalidScript`` with the server's own message if it refuses the script's
    ``lock_timeout`` or ``statement_timeout`` (one round trip, nothing kept).

    Every tenant would refuse them the same way, before any of the user's SQL
    runs; this says so once, as a failure of the migration, not of a tenant.
    """
    with connecting.connection(server.pool) as conn:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(CHECK_TIMEOUTS, (script.lock_timeout, script.statement_timeout))
        except psycopg.errors.InvalidParameterValue as exc:
            raise errors.InvalidScript(
                f"migration {script.version}: PostgreSQL refuses lockTimeout "
                f"{script.lock_timeout!r} or statementTimeout {script.statement_timeout!r}: "
                f"{connecting.describe(exc)}"
            ) from exc


def _refuse_unsafe(script: scripts.Script) -> None:
    problems = script.problems()
    if problems:
        raise errors.InvalidScript(f"migration {script.version}: " + "; ".join(problems))
