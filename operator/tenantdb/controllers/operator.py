"""Running the operator: load every handler module, then hand over to kopf."""

import logging
from collections.abc import Sequence

import kopf

from tenantdb.controllers import backups, migrations, schedules, startup, tenants, verification

HANDLER_MODULES = (startup, tenants, verification, migrations, backups, schedules)
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
    liveness_endpoint: str | None = None,
    log_format: str = "full",
    verbose: bool = False,
) -> None:
    """Run kopf until SIGINT/SIGTERM: in the namespaces named, or in all of them.

    Logs are structured (JSON, one object per line) in clusters, readable
    lines on a terminal; every line carries the object it is about.
    """
    kopf.configure(verbose=verbose, log_format=LOG_FORMATS[log_format], log_refkey="object")
    if not verbose:
        logging.getLogger("kopf.objects").addFilter(QuietTimers())
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
    )
