"""A world of its own for the chaos suite: faults here must not reach the other suites.

Its own control plane (its API server is restarted), its own PostgreSQL
(restarted too), reached by the operator only through a loopback TCP link
the tests cut (``support.Forwarder``), and its own operator process. The
superuser checks go to the server directly, never through the link.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tenantdb.devenv import controlplane, operator_process, postgres, processes, stack
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import Forwarder, eventually

TENANTS = int(os.environ.get("TENANTDB_CHAOS_TENANTS", "200"))
"""Tenants every fault is injected among (the issue's figure; smaller for a quick look)."""
KILLS = int(os.environ.get("TENANTDB_CHAOS_KILLS", "8"))
"""SIGKILLs in one rollout: 8 in ``make test``, 20 in the run docs/reliability.md quotes."""
CUT_SECONDS = float(os.environ.get("TENANTDB_CHAOS_CUT_SECONDS", "30"))
"""How long the link to PostgreSQL stays cut."""
REPORT = os.environ.get("TENANTDB_CHAOS_REPORT")
"""A file to write the results table to (docs/reliability.md quotes one)."""


@dataclass
class World:
    """The servers, the link, the operator, and a namespace with ``TENANTS`` Tenants."""

    plane: controlplane.ControlPlane
    database: postgres.EmbeddedPostgres
    link: Forwarder
    operator: operator_process.OperatorProcess
    kubectl: Kubectl
    results: list[dict[str, Any]] = field(default_factory=list)

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A superuser connection straight to the server (not through the link)."""
        return psycopg.connect(self.database.superuser_url(), autocommit=True)

    def start_database(self) -> None:
        """Start the stopped server again; the link follows it to its new port."""
        self.database.start()
        self.link.retarget((processes.LOOPBACK, self.database.port))

    def record(self, fault: str, injected: str, converged_after: float) -> None:
        self.results.append(
            {"fault": fault, "injected": injected, "converged_s": round(converged_after, 1)}
        )


def tenant_documents(names: list[str]) -> str:
    return yaml.safe_dump_all(
        {
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"isolation": "schema", "deletionPolicy": "Delete"},
        }
        for name in names
    )


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("chaos")
    with (
        controlplane.ControlPlane(root / "k8s") as plane,
        postgres.EmbeddedPostgres(root / "postgres") as database,
    ):
        stack.install_crds(plane.kubeconfig)
        link = Forwarder(processes.free_port(), (processes.LOOPBACK, database.port))
        url = psycopg.conninfo.make_conninfo(database.operator_url, port=str(link.port))
        operator = operator_process.OperatorProcess(
            plane.kubeconfig,
            url,
            root / "operator.log",
            extra_env={"TENANTDB_RETRY_DELAY": "1", "TENANTDB_WATCHDOG_INTERVAL": "1"},
        )
        operator.start()
        kubectl = Kubectl(plane.kubeconfig, "chaos")
        kubectl.run("create", "namespace", kubectl.namespace)
        kubectl.apply(tenant_documents([f"c-{i:03d}" for i in range(TENANTS)]))
        wait_all_ready(kubectl, timeout=300)
        state = World(plane, database, link, operator, kubectl)
        try:
            yield state
        finally:
            operator.stop()
            link.close()
            _report(state.results, root / "results.json")


def wait_all_ready(kubectl: Kubectl, timeout: float) -> None:
    """Until every Tenant of the namespace says Ready (one list per look: ``kubectl wait
    --all`` asks for each object in turn)."""

    def all_ready() -> bool:
        listed = json.loads(kubectl.run("get", "tenants", "-o", "json").stdout)["items"]
        return all(_ready(item) for item in listed)

    eventually(all_ready, timeout=timeout)


def _ready(item: dict[str, Any]) -> bool:
    conditions = (item.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _report(results: list[dict[str, Any]], path: Path) -> None:
    """What was injected and how long convergence took, as JSON and (if asked) a table."""
    path.write_text(json.dumps(results, indent=2))
    if REPORT and results:
        lines = [
            f"Measured {time.strftime('%Y-%m-%d')}: {TENANTS} schema tenants, {KILLS} kills.",
            "",
            "| fault | injected | converged after (s) |",
            "|---|---|---:|",
            *(f"| {r['fault']} | {r['injected']} | {r['converged_s']} |" for r in results),
        ]
        Path(REPORT).write_text("\n".join(lines) + "\n")
