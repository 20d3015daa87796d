"""Background lines name their object through kopf's own formatters."""

from __future__ import annotations

import json
import logging

from kopf._core.actions import loggers as kopf_loggers

from tenantdb.controllers import logs


def _record(logger: logs.ObjectLogger, message: str, *args: object) -> logging.LogRecord:
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    logger.logger.addHandler(handler)
    try:
        logger.warning(message, *args)
    finally:
        logger.logger.removeHandler(handler)
    return captured[0]


def test_a_text_line_starts_with_namespace_and_name() -> None:
    formatter = kopf_loggers.make_formatter(kopf_loggers.LogFormat.FULL, log_prefix=True)
    record = _record(logs.about("Backup", "team-a", "nightly", "u-1"), "backup failed: %s", "boom")
    assert "[team-a/nightly] backup failed: boom" in formatter.format(record)


def test_a_json_line_carries_the_object_reference_and_is_never_an_event() -> None:
    formatter = kopf_loggers.make_formatter(kopf_loggers.LogFormat.JSON, log_refkey="object")
    body = {"kind": "Tenant", "metadata": {"namespace": "team-a", "name": "acme", "uid": "u-2"}}
    record = _record(logs.about_body(body), "restored")
    line = json.loads(formatter.format(record))
    assert line["message"] == "restored"
    assert line["object"]["namespace"] == "team-a" and line["object"]["name"] == "acme"
    assert line["object"]["kind"] == "Tenant" and line["object"]["uid"] == "u-2"
    assert record.k8s_skip is True
