"""Dependency order of seeders, and the selection a request makes from them.

Owns: the topological order (ties broken by name, so the order is the
same on every run and every machine), the refusal of unknown dependencies,
of cycles and of production seeders that depend on development data, and
the closure of a request over dependencies (``only`` plus what they need)
and over dependents (what ``unseed`` must remove first).
"""

import heapq
from collections.abc import Collection, Iterable, Sequence

from tenantdb.core.seeding import declarations, errors

Seeder = declarations.Seeder


def order(seeders: Iterable[Seeder]) -> list[Seeder]:
    """Every seeder after its dependencies; refuse what cannot be ordered."""
    by_name: dict[str, Seeder] = {}
    for seeder in seeders:
        if seeder.name in by_name:
            raise errors.InvalidSeeder(
                f"seeders {by_name[seeder.name].source} and {seeder.source}"
                f" are both named {seeder.name!r}"
            )
        by_name[seeder.name] = seeder
    for seeder in by_name.values():
        for dependency in seeder.depends_on:
            needed = by_name.get(dependency)
            if needed is None:
                raise errors.InvalidSeeder(
                    f"seeder {seeder.name!r} depends on {dependency!r}, which does not exist"
                )
            if not seeder.development and needed.development:
                raise errors.InvalidSeeder(
                    f"production seeder {seeder.name!r} cannot depend on development seeder"
                    f" {dependency!r}: production tenants would never get it"
                )
    waiting = {name: len(s.depends_on) for name, s in by_name.items()}
    dependents: dict[str, list[str]] = {name: [] for name in by_name}
    for seeder in by_name.values():
        for dependency in seeder.depends_on:
            dependents[dependency].append(seeder.name)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[Seeder] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(by_name[name])
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(ordered) != len(by_name):
        stuck = {name: by_name[name] for name, count in waiting.items() if count > 0}
        raise errors.DependencyCycle(_cycle(stuck))
    return ordered


def _cycle(stuck: dict[str, Seeder]) -> list[str]:
    """One cycle among seeders that could not be ordered, first name repeated at the end."""
    start = min(stuck)
    path = [start]
    seen = {start: 0}
    current = start
    while True:
        current = min(d for d in stuck[current].depends_on if d in stuck)
        if current in seen:
            return [*path[seen[current] :], current]
        seen[current] = len(path)
        path.append(current)


def select(
    ordered: Sequence[Seeder], profile: declarations.Profile, only: Collection[str]
) -> list[Seeder]:
    """The seeders a request runs, in order: ``only`` (or the whole profile) and their
    dependencies. Under the production profile only production seeders qualify."""
    by_name = {s.name: s for s in ordered}
    unknown = sorted(set(only) - by_name.keys())
    if unknown:
        raise errors.UnknownSeeder(
            f"no seeder named {', '.join(map(repr, unknown))}"
            f" (known: {', '.join(sorted(by_name)) or 'none'})"
        )
    production = profile is declarations.Profile.PRODUCTION
    if only:
        wanted = _closure(by_name, only)
    else:
        wanted = {s.name for s in ordered if not (production and s.development)}
    refused = sorted(n for n in wanted if production and by_name[n].development)
    if refused:
        raise errors.InvalidSelection(
            f"{', '.join(map(repr, refused))} are development seeders;"
            " the production profile runs production seeders only"
        )
    return [s for s in ordered if s.name in wanted]


def _closure(by_name: dict[str, Seeder], names: Iterable[str]) -> set[str]:
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(by_name[name].depends_on)
    return wanted


def dependents_closure(ordered: Sequence[Seeder], names: Iterable[str]) -> set[str]:
    """``names`` and every seeder that depends on them, directly or not."""
    wanted = set(names)
    for seeder in ordered:
        if wanted.intersection(seeder.depends_on):
            wanted.add(seeder.name)
    return wanted
