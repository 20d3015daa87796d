"""Loggers about one object for work kopf does not run itself.

kopf hands its handlers a logger that names their object: text lines start
with ``[namespace/name]``, JSON lines carry the reference under ``object``.
Background work (backup and restore jobs, the statement watchdog, the usage
survey, a rollout's worker threads) logs through ``about`` instead, which
gives the same reference to kopf's own formatters, so every line about an
object names it whoever wrote it. These lines are never posted as events:
the callers post their own, and background threads have no event queue.
"""

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from tenantdb.api import API_VERSION

_LOG = logging.getLogger("tenantdb")


class ObjectLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds kopf's object reference to every record (and keeps the caller's ``extra``)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def about(kind: str, namespace: str, name: str, uid: str | None = None) -> ObjectLogger:
    """A logger whose lines name ``kind`` ``namespace/name``, as kopf's handler loggers do."""
    reference = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "uid": uid,
    }
    return ObjectLogger(_LOG, {"k8s_ref": reference, "k8s_skip": True})


def about_body(body: Mapping[str, Any]) -> ObjectLogger:
    """A logger naming the object ``body`` is (its kind, namespace, name and UID)."""
    meta = body.get("metadata") or {}
    return about(
        str(body.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        meta.get("uid"),
    )
