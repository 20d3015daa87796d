"""An operator that cannot reach its database stays alive, says why, and keeps retrying.

The operator's URL points at a loopback port where nothing listens; later a
forwarder to the session's real PostgreSQL opens on that port, as a
database coming back would. Liveness answers throughout (the kubelet must
not restart the pod in a loop); readiness is 503 with the reason until the
start-up database work succeeds, then 200.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.devenv import operator_process, processes
from tests.e2e.support import Forwarder, eventually

pytestmark = [pytest.mark.kube, pytest.mark.postgres]


def readiness(url: str) -> tuple[int, str]:
    """The readiness endpoint's answer: status code and text."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def unreachable(
    kubeconfig: Path, operator_url: str, tmp_path: Path
) -> Iterator[tuple[operator_process.OperatorProcess, int]]:
    """An operator whose database URL names a closed port (watching a namespace of its own)."""
    port = processes.free_port()
    url = psycopg.conninfo.make_conninfo(operator_url, port=str(port))
    env = {"TENANTDB_NAMESPACE": f"readiness-{port}", "TENANTDB_RETRY_DELAY": "1"}
    process = operator_process.OperatorProcess(kubeconfig, url, tmp_path / "op.log", extra_env=env)
    process.start(ready=False)
    yield process, port
    process.stop()


def test_unreachable_database_is_not_ready_alive_and_retried_until_it_answers(
    unreachable: tuple[operator_process.OperatorProcess, int], operator_url: str
) -> None:
    process, port = unreachable
    eventually(lambda: "DatabaseUnavailable" in readiness(process.readiness_url)[1], timeout=90)
    code, reason = readiness(process.readiness_url)
    assert code == 503 and "DatabaseUnavailable" in reason, reason
    eventually(lambda: "attempt 2" in process.log_path.read_text(), timeout=90)  # retried
    log = process.log_path.read_text()
    assert "not ready: DatabaseUnavailable" in log
    assert process.pid is not None  # alive: kopf's liveness answered in start()

    params = psycopg.conninfo.conninfo_to_dict(operator_url)
    forwarder = Forwarder(port, (str(params["host"]), int(str(params["port"]))))
    try:
        eventually(lambda: readiness(process.readiness_url)[0] == 200, timeout=90)
        assert "tenantdb operator started" in process.log_path.read_text()
        assert str(params["password"]) not in process.log_path.read_text()
    finally:
        forwarder.close()
