"""Operator start-up and shutdown: settings, pools, the watchdog, kopf's own settings.

kopf's annotations get a ``tenantdb.io`` prefix, its finalizer is ours, and
watches have explicit timeouts (silent, frozen watch streams are a known
failure of long-running operators).
"""

import logging
from typing import Any

import kopf
import prometheus_client

from tenantdb import settings as settings_
from tenantdb.api import GROUP
from tenantdb.controllers import kube, patrolling, persistence, runtime, surveying
from tenantdb.core import errors

FINALIZER = f"{GROUP}/finalizer"
STATE_PREFIX = f"operator.{GROUP}"
"""kopf's own annotations. Not plain ``tenantdb.io``: kopf ignores changes to
annotations under its prefix, and users annotate under ``tenantdb.io/``."""


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Parse settings once, connect, configure kopf, and start the statement watchdog."""
    config = settings_.Settings.from_environment()
    configure_kopf(settings, config)
    kube.login()
    try:
        memo["runtime"] = runtime.Runtime.start(config)
    except errors.DatabaseUnavailable as exc:
        raise kopf.TemporaryError(str(exc), delay=config.watch.retry_delay) from exc
    except errors.InsufficientPrivilege as exc:
        logger.error("%s", exc)
        raise kopf.PermanentError(str(exc)) from exc
    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port)
    memo["patrol"] = patrolling.start(memo["runtime"])
    memo["surveyor"] = surveying.start(memo["runtime"])
    logger.info("tenantdb operator started (environment=%s)", config.environment.value)


@kopf.on.cleanup()
def stop(memo: Any, **_: Any) -> None:
    """Stop the watchdog, then close database connections."""
    patrol = memo.get("patrol")
    if isinstance(patrol, patrolling.Patrol):
        patrol.stop()
    surveyor = memo.get("surveyor")
    if isinstance(surveyor, surveying.Surveyor):
        surveyor.stop()
    current = memo.get("runtime")
    if isinstance(current, runtime.Runtime):
        current.close()


def configure_kopf(settings: kopf.OperatorSettings, config: settings_.Settings) -> None:
    """Persistence under our prefix (small whatever the spec), bounded watches,
    quiet event posting."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = persistence.BoundedProgressStorage(prefix=STATE_PREFIX)
    settings.persistence.diffbase_storage = persistence.CompactDiffBaseStorage(
        prefix=STATE_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = config.watch.server_timeout
    settings.watching.client_timeout = config.watch.client_timeout
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.INFO
    # A handler holds up to two of the pool's connections at once (a tenant's lock
    # and a write that must commit on its own), so the pool serves half as many.
    settings.execution.max_workers = max(config.database.pool_max_size // 2, 2)
