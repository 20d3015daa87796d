"""Running the operator: load every handler module, then hand over to kopf."""

import logging
from collections.abc import Sequence

import kopf

from tenantdb import settings as settings_
from tenantdb.controllers import (
    apiserver,
    backups,
    census,
    heap,
    migrations,
    operations,
    readiness,
    runtime,
    schedules,
    servers,
    startup,
    tenants,
    verification,
)

HANDLER_MODULES = (
    startup,
    apiserver,
    tenants,
    verification,
    migrations,
    backups,
    schedules,
    servers,
    operations,
    census,
    heap,
)
"""Importing these registers their handlers with kopf's default registry."""


LOG_FORMATS = {"json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL}


class QuietTimers(logging.Filter):
    """Drop kopf's "Timer ... succeeded." lines: one per tenant per tick is noise.

    Failures, repairs and drift are still logged by the handlers themselves.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timer '") and message.endswith("' succeeded."))


def run(
    namespaces: Sequence[str],
    peering: settings_.PeeringSettings | None = None,
    liveness_endpoint: str | None = None,
    readiness_endpoint: str | None = None,
    log_format: str = "full",
    verbose: bool = False,
) -> None:
    """Run kopf until SIGINT/SIGTERM: in the namespaces named, or in all of them.

    With a peering name, kopf keeps every replica but the live one of the
    highest priority paused (its watches and daemons stopped); the peering
    object must exist (the chart creates it). The readiness endpoint answers
    as soon as kopf starts: not ready until the database is reached. Logs are structured (JSON, one
    object per line) in clusters, readable lines on a terminal; every line
    about an object names it (``[namespace/name]`` or the ``object`` key).
    """
    peering = peering or settings_.PeeringSettings()
    kopf.configure(
        verbose=verbose, log_format=LOG_FORMATS[log_format], log_prefix=None, log_refkey="object"
    )
    if not verbose:
        logging.getLogger("kopf.objects").addFilter(QuietTimers())
    state = readiness.Readiness()
    if readiness_endpoint:
        readiness.serve(readiness_endpoint, state)
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.peering.lifetime = peering.lifetime
    kopf_settings.peering.stealth = True  # keep-alives are not news; pauses are logged
    kopf.run(
        settings=kopf_settings,
        standalone=peering.name is None,
        peering_name=peering.name,
        priority=peering.priority,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
        memo=runtime.SharedMemo(
            readiness=state, **{apiserver.MEMO_KEY: apiserver.connection_limit(namespaces)}
        ),
    )
