"""Operator settings: parsed once at start-up, then handed down explicitly.

Nothing here is read at import time. ``Settings.from_environment`` is the one
place that looks at environment variables; everything else receives a
``Settings`` (kopf's ``memo`` carries it to the handlers).
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Environment(StrEnum):
    """Where the operator runs; ``production`` refuses development seeders."""

    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"


@dataclass(frozen=True)
class PlanLimits:
    """Per-tenant limits a plan maps to (applied to the tenant's login role)."""

    connection_limit: int = 20
    """``CONNECTION LIMIT`` of the login role, in connections."""
    statement_timeout: str = "60s"
    """``statement_timeout`` set on the login role (a PostgreSQL duration)."""
    work_mem: str | None = None
    """``work_mem`` set on the login role, or the server default when unset."""


DEFAULT_PLANS: Mapping[str, PlanLimits] = {
    "free": PlanLimits(connection_limit=5, statement_timeout="30s"),
    "standard": PlanLimits(connection_limit=20, statement_timeout="60s"),
    "enterprise": PlanLimits(connection_limit=100, statement_timeout="300s", work_mem="64MB"),
}


@dataclass(frozen=True)
class DatabaseSettings:
    """The PostgreSQL server the operator manages tenants on."""

    url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    """libpq URL of an account allowed to create roles, schemas and databases."""
    pool_min_size: int = 1
    """Connections the pool keeps open, per server."""
    pool_max_size: int = 8
    """Connections the pool may open at most, per server."""
    control_schema: str = "tenantdb"
    """Schema holding the tenant registry and the ledgers."""
    shared_schema: str = "tenantdb_shared"
    """Schema holding the shared tables of ``shared`` tenants (row-level security)."""
    public_host: str | None = None
    """Host written into tenants' Secrets (default: the host of ``url``)."""


@dataclass(frozen=True)
class WatchSettings:
    """Kubernetes watch and retry timings."""

    namespace: str | None = None
    """Namespace to watch; ``None`` watches all namespaces."""
    server_timeout: int = 300
    """Seconds the API server keeps one watch request open."""
    client_timeout: int = 330
    """Seconds before the client gives up on a silent watch stream."""
    retry_delay: float = 10.0
    """Seconds before retrying after a transient failure (database down)."""
    verify_interval: float = 300.0
    """Seconds between two isolation checks (and repairs) of one tenant."""


@dataclass(frozen=True)
class WatchdogSettings:
    """The statement watchdog: a plan's statement_timeout enforced from outside the session.

    A session can ``SET statement_timeout = 0``; the watchdog cancels a statement
    that runs past its plan's limit plus ``grace``, and terminates the session if
    the statement is still running ``terminate_grace`` after the cancel.
    """

    interval: float = 5.0
    """Seconds between two looks at every tenant's running statements
    (``TENANTDB_WATCHDOG_INTERVAL``); 0 turns the watchdog off."""
    grace: float = 5.0
    """Seconds a statement may run past its plan's ``statement_timeout`` before it
    is cancelled (``TENANTDB_WATCHDOG_GRACE``); PostgreSQL's own timeout acts first."""
    terminate_grace: float = 10.0
    """Seconds a cancelled statement may keep running before its session is
    terminated (``TENANTDB_WATCHDOG_TERMINATE_GRACE``)."""


def default_seeders_dir() -> Path:
    """The repository's ``seeders/`` directory, next to ``operator/``."""
    return Path(__file__).resolve().parents[2] / "seeders"


@dataclass(frozen=True)
class Settings:
    """Everything the operator is configured with."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    watchdog: WatchdogSettings = field(default_factory=WatchdogSettings)
    plans: Mapping[str, PlanLimits] = field(default_factory=lambda: dict(DEFAULT_PLANS))
    environment: Environment = Environment.PRODUCTION
    instance: str = "tenantdb"
    """Who applies changes, recorded in ledgers (pod name by default)."""
    metrics_port: int = 0
    """Port of the Prometheus endpoint; 0 disables it."""
    seeders_dir: Path = field(default_factory=default_seeders_dir)
    """Directory of the seeders (``TENANTDB_SEEDERS_DIR``; default: the repository's ``seeders/``)."""

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``TENANTDB_*`` variables and ``DATABASE_URL``."""
        env = os.environ if env is None else env
        defaults = DatabaseSettings()
        database = DatabaseSettings(
            url=env.get("DATABASE_URL", defaults.url),
            pool_min_size=int(env.get("TENANTDB_POOL_MIN_SIZE", defaults.pool_min_size)),
            pool_max_size=int(env.get("TENANTDB_POOL_MAX_SIZE", defaults.pool_max_size)),
            public_host=env.get("TENANTDB_PUBLIC_HOST") or None,
        )
        watch = WatchSettings(
            namespace=env.get("TENANTDB_NAMESPACE") or None,
            retry_delay=float(env.get("TENANTDB_RETRY_DELAY", WatchSettings.retry_delay)),
            verify_interval=float(
                env.get("TENANTDB_VERIFY_INTERVAL", WatchSettings.verify_interval)
            ),
        )
        watchdog = WatchdogSettings(
            interval=float(env.get("TENANTDB_WATCHDOG_INTERVAL", WatchdogSettings.interval)),
            grace=float(env.get("TENANTDB_WATCHDOG_GRACE", WatchdogSettings.grace)),
            terminate_grace=float(
                env.get("TENANTDB_WATCHDOG_TERMINATE_GRACE", WatchdogSettings.terminate_grace)
            ),
        )
        return cls(
            database=database,
            watch=watch,
            watchdog=watchdog,
            plans=_plans(env.get("TENANTDB_PLANS")),
            environment=Environment(env.get("TENANTDB_ENVIRONMENT", Environment.PRODUCTION)),
            instance=env.get("POD_NAME") or env.get("HOSTNAME") or "tenantdb",
            metrics_port=int(env.get("TENANTDB_METRICS_PORT", "0")),
            seeders_dir=Path(env.get("TENANTDB_SEEDERS_DIR") or default_seeders_dir()).resolve(),
        )


def _plans(raw: str | None) -> Mapping[str, PlanLimits]:
    """Plans from JSON (``{"gold": {"connection_limit": 50}}``) over the defaults."""
    plans = dict(DEFAULT_PLANS)
    for name, limits in (json.loads(raw) if raw else {}).items():
        plans[name] = PlanLimits(**limits)
    return plans
