"""Seeding: production-safe and development data per tenant, idempotent and guarded.

Owns everything about seed data: discovering seeders in a directory
(``discovering``, ``sqlfiles``, ``declarations``), their dependency order
(``ordering``), the environment guard (``guarding``), the per-tenant seed
history (``history``), the runner and the context seeders receive
(``running``, ``sessions``, ``context``), unseed (``unseeding``), and the
operations the CLI and the controllers call (``commands``). It must not
touch tenants' roles, schemas or grants: it enters a tenant through
``core.scoping`` and writes as the tenant's own login role.

Seeder authors need ``Context`` (what ``seed(ctx)`` receives); callers need
``seed_tenant``, ``unseed_tenant``, ``list_seeders`` and ``SeedReport``.
"""

from tenantdb.core.seeding import commands, context, declarations, errors, reports

Context = context.Context
Seeder = declarations.Seeder
Profile = declarations.Profile
SeedReport = reports.SeedReport
ProgressEvent = reports.ProgressEvent
SeedingError = errors.SeedingError
ForbiddenInProduction = errors.ForbiddenInProduction
SeedFailed = errors.SeedFailed

seed_tenant = commands.seed_tenant
unseed_tenant = commands.unseed_tenant
list_seeders = commands.list_seeders
find_tenant = commands.find_tenant
tenant_history = commands.tenant_history

__all__ = [
    "Context",
    "ForbiddenInProduction",
    "Profile",
    "ProgressEvent",
    "SeedFailed",
    "SeedReport",
    "Seeder",
    "SeedingError",
    "find_tenant",
    "list_seeders",
    "seed_tenant",
    "tenant_history",
    "unseed_tenant",
]
