"""Conditions, phases and events: how handlers tell users what happened.

Every handler ends through ``succeed`` or ``fail`` so that a status write
and an event always go together, and errors become kopf's retry signals in
exactly one place.
"""

from typing import Any, NoReturn

import kopf
from prometheus_client import Counter, Gauge, Histogram

from tenantdb.api import conditions

RECONCILES = Counter(
    "tenantdb_reconciles_total", "Reconciliations by kind and outcome", ["kind", "outcome"]
)

RECONCILE_ERRORS = Counter(
    "tenantdb_reconcile_errors_total",
    "Reconciliations that failed, by kind and reason (a CamelCase word, never a name)",
    ["kind", "reason"],
)
RECONCILE_SECONDS = Histogram(
    "tenantdb_reconcile_duration_seconds",
    "Time of one reconciliation (a Tenant handler, a Migration's pass), failures included",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

WATCHDOG_ACTIONS = Counter(
    "tenantdb_watchdog_actions_total",
    "Tenant statements the watchdog cancelled and sessions it terminated, past their plan's limit",
    ["action"],
)

SERVER_REACHABLE = Gauge(
    "tenantdb_database_server_reachable",
    "Whether the operator's last look at a DatabaseServer reached it (1) or not (0)",
    ["server"],
)
SERVER_TENANTS = Gauge(
    "tenantdb_database_server_tenants",
    "Tenants placed on a DatabaseServer, by isolation mode",
    ["server", "isolation"],
)
TENANTS_WAITING = Gauge(
    "tenantdb_tenants_waiting",
    "Tenants whose reconcile had to wait and that are due to be reconciled again",
)
USAGE_TENANTS = Gauge(
    "tenantdb_tenants", "Live tenants by isolation mode and plan", ["isolation", "plan"]
)
USAGE_NEAR_LIMIT = Gauge(
    "tenantdb_tenants_near_connection_limit",
    "Tenants whose sessions reach the near-limit fraction of their plan's connection limit",
    ["plan"],
)
USAGE_UNHEALTHY = Gauge(
    "tenantdb_tenants_unhealthy", "Tenants crossing one health threshold, by reason", ["reason"]
)
USAGE_BYTES = Gauge(
    "tenantdb_data_bytes",
    "Bytes of tenant data by isolation mode (shared spaces once)",
    ["isolation"],
)
USAGE_SWEEP_SECONDS = Histogram(
    "tenantdb_usage_sweep_seconds",
    "Time of one usage sweep over every tenant of the server",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TENANT_BYTES = Gauge(
    "tenantdb_tenant_bytes",
    "One tenant's bytes (only with TENANTDB_USAGE_TENANT_METRICS=true: a series per tenant)",
    ["namespace", "tenant"],
)
TENANT_CONNECTIONS = Gauge(
    "tenantdb_tenant_connections",
    "One tenant's live sessions (only with TENANTDB_USAGE_TENANT_METRICS=true)",
    ["namespace", "tenant"],
)

BACKUP_SECONDS = Histogram(
    "tenantdb_backup_duration_seconds",
    "Time to take one Backup, dump to stored archive",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)
BACKUP_BYTES = Counter("tenantdb_backup_bytes_total", "Bytes of archives stored")
RESTORE_SECONDS = Histogram(
    "tenantdb_restore_duration_seconds",
    "Time to restore one archive into a new tenant, failures included",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)
BACKUP_FAILURES = Counter(
    "tenantdb_backup_failures_total", "Backups that ended Failed, by reason", ["reason"]
)

Patch = Any  # kopf.Patch: a dict-like object applied after the handler returns.


def current_conditions(status: Any) -> list[conditions.Condition]:
    """The conditions already on the object."""
    raw = (status or {}).get("conditions") or []
    return [conditions.Condition.model_validate(c) for c in raw]


def write_condition(
    patch: Patch,
    status: Any,
    generation: int,
    type_: conditions.ConditionType,
    value: conditions.ConditionStatus,
    reason: str,
    message: str,
) -> None:
    """Set one condition in the status patch, keeping the others (and earlier writes)."""
    pending = patch.status.get("conditions")
    base = current_conditions({"conditions": pending}) if pending else current_conditions(status)
    updated = conditions.set_condition(base, type_, value, reason, message, generation)
    patch.status["conditions"] = [c.to_api() for c in updated]
    patch.status["observedGeneration"] = generation


def write_ready(
    patch: Patch,
    status: Any,
    generation: int,
    phase: str,
    value: conditions.ConditionStatus,
    reason: str,
    message: str,
) -> None:
    """Set the phase and ``Ready`` (with kstatus's ``Reconciling``/``Stalled``) in the patch."""
    pending = patch.status.get("conditions")
    base = current_conditions({"conditions": pending}) if pending else current_conditions(status)
    updated = conditions.set_ready(base, phase, value, reason, message, generation)
    patch.status["phase"] = phase
    patch.status["conditions"] = [c.to_api() for c in updated]
    patch.status["observedGeneration"] = generation


def drop_unchanged(patch: Patch, status: Any) -> None:
    """Leave out of the status patch every field that already holds that value.

    kopf sends whatever the patch holds: an unchanged field still costs a
    write. With none left, the patch has no ``status`` at all.
    """
    current = dict(status or {})
    for key in list(patch.status):
        if patch.status[key] == current.get(key):
            del patch.status[key]
    if "status" in patch and not patch["status"]:
        del patch["status"]


def fail(
    kind: str,
    exc: Exception,
    body: Any,
    patch: Patch,
    status: Any,
    generation: int,
    phase: str,
    retry_delay: float,
    logger: kopf.Logger,
) -> NoReturn:
    """Record a failure as Ready=False plus a Warning event, then tell kopf whether to retry."""
    reason = str(getattr(exc, "reason", "Error"))
    permanent = bool(getattr(exc, "permanent", True))
    message = str(exc)
    write_ready(patch, status, generation, phase, "False", reason, message)
    kopf.warn(body, reason=reason, message=message)
    RECONCILES.labels(kind=kind, outcome="permanent" if permanent else "retry").inc()
    RECONCILE_ERRORS.labels(kind=kind, reason=reason).inc()
    logger.warning("%s: %s", reason, message)
    if permanent:
        raise kopf.PermanentError(message) from exc
    raise kopf.TemporaryError(message, delay=retry_delay) from exc
