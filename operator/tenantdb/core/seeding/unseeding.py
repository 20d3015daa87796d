"""Unseed: remove exactly what development seeders added; production data stays.

Owns the reverse walk: the development seeders recorded in a tenant's
history (all of them, or the ones asked for plus every recorded seeder
that depends on them), newest dependency last, each one's ``unseed`` in
its own transaction as the tenant's login role, and its history row
deleted in that same transaction (right after, for ``database`` tenants).
"""

import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from tenantdb.core.seeding import declarations, errors, history, ordering, reports, running


def plan(
    ordered: Sequence[declarations.Seeder], done: dict[str, history.Entry], only: Collection[str]
) -> list[declarations.Seeder]:
    """The recorded development seeders to remove, dependents before their dependencies."""
    by_name = {s.name: s for s in ordered}
    unknown = sorted(n for n in only if n not in by_name and n not in done)
    if unknown:
        raise errors.UnknownSeeder(f"no seeder named {', '.join(map(repr, unknown))}")
    profiles = {name: entry.profile for name, entry in done.items()}
    profiles.update({s.name: s.profile.value for s in ordered})
    production = sorted(n for n in only if profiles[n] != declarations.Profile.DEVELOPMENT)
    if production:
        raise errors.InvalidSelection(
            f"{', '.join(map(repr, production))}: production seeders; unseed removes"
            " development data only"
        )
    recorded = {name for name, entry in done.items() if entry.profile == "development"}
    wanted = ordering.dependents_closure(ordered, only) & recorded if only else recorded
    missing = sorted(wanted - by_name.keys())
    if missing:
        raise errors.UnknownSeeder(
            f"{', '.join(map(repr, missing))} ran on this tenant but are no longer in the"
            " seeders directory: their data cannot be removed by code that is gone"
        )
    return [s for s in reversed(ordered) if s.name in wanted]


def remove(
    run: running.Run, seeders: Sequence[declarations.Seeder], report: reports.SeedReport
) -> reports.SeedReport:
    """Run each seeder's ``unseed`` and forget it; stop at the first failure."""
    total = len(seeders)
    for position, seeder in enumerate(seeders, start=1):
        running.emit(run, seeder, position, total, reports.State.STARTED)
        try:
            rows, seconds = _remove_one(run, seeder, position, total)
        except Exception as exc:
            running.emit(run, seeder, position, total, reports.State.FAILED)
            raise running.failure(errors.UnseedFailed, "unseed of", seeder, exc, report) from exc
        report.results.append(running.result(seeder, reports.Outcome.REMOVED, rows, seconds))
        running.emit(run, seeder, position, total, reports.State.REMOVED)
    return report


def _remove_one(
    run: running.Run, seeder: declarations.Seeder, position: int, total: int
) -> tuple[int, float]:
    """Unseed one seeder; its seconds include forgetting it (unlike seeding's)."""
    unseed = seeder.unseed
    assert unseed is not None  # declarations refuse development seeders without one

    def record(control: psycopg.Connection[Any], rows: int, seconds: float) -> None:
        history.erase(control, run.control_schema, run.location.uid, seeder.name)

    _ = run.session  # connect before the clock starts, as seeding does
    started = time.monotonic()
    rows, _seconds = running.in_tenant(run, seeder, position, total, unseed, record)
    return rows, time.monotonic() - started
