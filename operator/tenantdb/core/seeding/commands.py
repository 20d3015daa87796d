"""The seeding operations the CLI and the Tenant controller call.

Owns the order of one operation: discover and order the seeders, select
what the request asks for, apply the environment guard (before any
connection is opened, so a refusal writes nothing), take the tenant's
lock (``locking``, the one provisioning and migrations take), read its history, and hand the pending seeders to the
runner. Nothing here knows about Kubernetes.
"""

import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

from tenantdb.core import connecting, locking, naming, pools, scoping
from tenantdb.core.seeding import (
    declarations,
    discovering,
    errors,
    guarding,
    history,
    ordering,
    reports,
    running,
    unseeding,
)


def list_seeders(seeders_dir: Path) -> list[declarations.Seeder]:
    """Every seeder of the directory, in the order a full development run applies them."""
    return ordering.order(discovering.discover(seeders_dir))


def seed_tenant(
    pool: psycopg_pool.ConnectionPool,
    control_schema: str,
    shared_schema: str,
    tenant_sessions: pools.TenantSessions,
    tenant_uid: str,
    profile: str,
    only: Sequence[str],
    environment: str,
    seeders_dir: Path,
    progress: reports.Progress | None = None,
    *,
    applied_by: str = "tenantdb",
    options: Mapping[str, str] | None = None,
) -> reports.SeedReport:
    """Run the seeders a tenant still lacks; return what ran, what was skipped, and rows.

    ``profile`` is ``production`` (production seeders only) or
    ``development`` (both); ``only`` narrows the run to those seeders and
    their dependencies. Raises ``ForbiddenInProduction`` (nothing written)
    when development data is asked for in production, ``SeedFailed``
    when a seeder fails (its transaction rolled back, earlier ones kept),
    ``InvalidSeeder``/``UnknownSeeder``/``InvalidSelection`` for a bad
    directory or request, and ``TenantNotFound``. ``options`` are
    run-time knobs keyed ``seeder.option`` (``demo_history.users``);
    they do not count as a new version.
    """
    chosen = _profile(profile)
    ordered = list_seeders(seeders_dir)
    plan = ordering.select(ordered, chosen, only)
    guarding.check(environment, chosen, plan)
    by_seeder = _options(ordered, options or {})
    report = reports.SeedReport(tenant_uid, chosen.value)
    with _started(
        pool,
        control_schema,
        shared_schema,
        tenant_sessions,
        tenant_uid,
        chosen.value,
        applied_by,
        progress,
        by_seeder,
    ) as (run, done):
        return running.apply(run, plan, done, report)


def unseed_tenant(
    pool: psycopg_pool.ConnectionPool,
    control_schema: str,
    shared_schema: str,
    tenant_sessions: pools.TenantSessions,
    tenant_uid: str,
    seeders_dir: Path,
    only: Collection[str] = (),
    progress: reports.Progress | None = None,
) -> reports.SeedReport:
    """Remove what development seeders added to a tenant (``only`` those and their
    recorded dependents); production seeders' data is never touched."""
    ordered = list_seeders(seeders_dir)
    report = reports.SeedReport(tenant_uid, declarations.Profile.DEVELOPMENT.value)
    with _started(
        pool,
        control_schema,
        shared_schema,
        tenant_sessions,
        tenant_uid,
        report.profile,
        "tenantdb",
        progress,
        {},
    ) as (run, done):
        return unseeding.remove(run, unseeding.plan(ordered, done, only), report)


def tenant_history(
    pool: psycopg_pool.ConnectionPool, control_schema: str, tenant_uid: str
) -> dict[str, history.Entry]:
    """What the seed history holds for one tenant, by seeder name."""
    with connecting.connection(pool) as control:
        return history.load(control, control_schema, tenant_uid)


def find_tenant(
    pool: psycopg_pool.ConnectionPool, control_schema: str, reference: str
) -> scoping.TenantLocation:
    """A live tenant by UID, ``namespace/name``, or a name used in one namespace only."""
    with connecting.connection(pool) as control:
        found = scoping.load(control, control_schema, reference)
        if found is not None:
            return found
        namespace, _, name = reference.rpartition("/")
        candidates = [
            t
            for t in scoping.live_tenants(control, control_schema, namespace or None)
            if t.name == name
        ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise errors.TenantNotFound(f"no live tenant is called {reference!r}")
    places = ", ".join(f"{t.namespace}/{t.name}" for t in candidates)
    raise errors.TenantNotFound(f"{reference!r} is ambiguous ({places}): say namespace/name")


@contextlib.contextmanager
def _started(
    pool: psycopg_pool.ConnectionPool,
    control_schema: str,
    shared_schema: str,
    tenant_sessions: pools.TenantSessions,
    tenant_uid: str,
    profile: str,
    applied_by: str,
    progress: reports.Progress | None,
    options: Mapping[str, Mapping[str, str]],
) -> Iterator[tuple[running.Run, dict[str, history.Entry]]]:
    """A run on a live tenant under its lock, and the tenant's seed history; the tenant
    session (opened on first use) and the lock end with the block. Seeding never
    overlaps provisioning or migrations on one tenant."""
    schema = naming.Identifier(control_schema)
    with locking.hold(pool, schema, tenant_uid) as control:
        location = _location(control, control_schema, tenant_uid)
        with contextlib.ExitStack() as resources:
            run = running.Run(
                pool,
                control_schema,
                shared_schema,
                tenant_sessions,
                location,
                profile,
                applied_by,
                progress,
                resources,
                options,
            )
            yield run, history.load(control, control_schema, tenant_uid)


def _options(
    ordered: Sequence[declarations.Seeder], options: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    known = {s.name for s in ordered}
    by_seeder: dict[str, dict[str, str]] = {}
    for key, value in options.items():
        seeder, dot, name = key.partition(".")
        if not dot or not name or seeder not in known:
            raise errors.UnknownSeeder(
                f"option {key!r} must be written seeder.option, with a known seeder"
            )
        by_seeder.setdefault(seeder, {})[name] = value
    return by_seeder


def _profile(profile: str) -> declarations.Profile:
    try:
        return declarations.Profile(profile)
    except ValueError:
        choices = ", ".join(p.value for p in declarations.Profile)
        raise errors.InvalidSelection(f"profile {profile!r} must be one of {choices}") from None


def _location(
    control: psycopg.Connection[Any], control_schema: str, tenant_uid: str
) -> scoping.TenantLocation:
    location = scoping.load(control, control_schema, tenant_uid)
    if location is None:
        raise errors.TenantNotFound(f"no live tenant has UID {tenant_uid!r}")
    return location
