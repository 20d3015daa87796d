"""Two replicas in one kopf peering: the standby's own background work waits too.

kopf pauses a standby's handlers; the usage survey, the statement watchdog and
the verification loop are threads and tasks of ours, which wait on
``controllers.leadership``. Both replicas watch one namespace of their own with
a ``KopfPeering`` there, fixed priorities, a 5 s peering lifetime and a survey
every second: the active one sweeps, the standby does not, and once the active
one is killed the standby takes the sweeps over.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tenantdb.devenv import operator_process, processes
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually, scrape

pytestmark = [pytest.mark.kube, pytest.mark.postgres]

PEERING = "tenantdb-e2e"
SWEEPS = "tenantdb_usage_sweep_seconds_count"


def replica(
    kubeconfig: Path, url: str, namespace: str, priority: int, log: Path
) -> operator_process.OperatorProcess:
    env = {
        "TENANTDB_NAMESPACE": namespace,
        "TENANTDB_PEERING": PEERING,
        "TENANTDB_PRIORITY": str(priority),
        "TENANTDB_PEERING_LIFETIME": "5",
        "TENANTDB_USAGE_INTERVAL": "1",
        "TENANTDB_METRICS_PORT": str(processes.free_port()),
    }
    return operator_process.OperatorProcess(kubeconfig, url, log, extra_env=env)


@pytest.fixture
def replicas(
    api_only: Kubectl, kubeconfig: Path, operator_url: str, tmp_path: Path
) -> Iterator[tuple[operator_process.OperatorProcess, operator_process.OperatorProcess]]:
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    api_only.apply(yaml.safe_dump(peering))
    ns = api_only.namespace
    active = replica(kubeconfig, operator_url, ns, 200, tmp_path / "active.log")
    standby = replica(kubeconfig, operator_url, ns, 100, tmp_path / "standby.log")
    active.start()
    standby.start()
    yield active, standby
    standby.stop()
    active.stop()


def sweeps(process: operator_process.OperatorProcess) -> float:
    return scrape(process).get(SWEEPS, 0.0)


def test_only_the_active_replica_sweeps_and_the_standby_takes_over(
    replicas: tuple[operator_process.OperatorProcess, operator_process.OperatorProcess],
) -> None:
    active, standby = replicas
    eventually(lambda: sweeps(active) >= 3, timeout=60)
    assert sweeps(standby) == 0, "the standby surveyed while the active replica was alive"
    assert "background work paused (standby)" not in active.log_path.read_text()
    active.kill()
    eventually(lambda: sweeps(standby) >= 2, timeout=60)  # its record expires after 5 s
    assert "background work resumed" in standby.log_path.read_text()
