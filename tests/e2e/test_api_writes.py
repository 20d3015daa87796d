"""What a Tenant's reconciles cost the API server, counted by the API server itself.

A control plane and an operator of their own, so that every write counted
is this test's: ``apiserver_request_total`` has no namespace or user label.
The operator's verification loop is held off (``TENANTDB_VERIFY_TICK``) so
that only reconciles write; its own writes are the benchmark's to count.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantdb.devenv import apimetrics, controlplane, operator_process, processes, stack
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually, scrape, tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
OURS = frozenset({"tenants", "secrets", "events"})
"""What a Tenant's reconcile writes; the controller-manager writes other kinds."""
FINALIZER = apimetrics.Request("PATCH", "tenants", "")
READY = 'tenantdb_reconciles_total{kind="Tenant",outcome="ready"}'


class Cluster:
    """The test's own API server and operator."""

    def __init__(self, kubeconfig: Path, operator: operator_process.OperatorProcess) -> None:
        self.kubeconfig = kubeconfig
        self.operator = operator

    def writes(self) -> Counter[apimetrics.Request]:
        return apimetrics.writes(apimetrics.read(self.kubeconfig), OURS)

    def reconciles(self) -> float:
        return scrape(self.operator).get(READY, 0.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, operator_url: str) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("api-writes")
    with controlplane.ControlPlane(work / "k8s") as plane:
        stack.install_crds(plane.kubeconfig)
        env = {"TENANTDB_VERIFY_TICK": "3600", "TENANTDB_METRICS_PORT": str(processes.free_port())}
        operator = operator_process.OperatorProcess(
            plane.kubeconfig, operator_url, work / "operator.log", extra_env=env
        )
        operator.start()
        try:
            yield Cluster(plane.kubeconfig, operator)
        finally:
            operator.stop()


def test_a_first_reconcile_writes_three_times_and_an_unchanged_one_at_most_once(
    cluster: Cluster,
) -> None:
    kubectl = Kubectl(cluster.kubeconfig, f"writes-{uuid.uuid4().hex[:8]}")
    kubectl.run("create", "namespace", kubectl.namespace)
    before = cluster.writes()
    kubectl.apply(tenant("counted"))
    kubectl.wait("tenant/counted", "condition=Ready")
    eventually(lambda: any(e["reason"] == "Provisioned" for e in kubectl.events("counted")))
    first = apimetrics.since(before, cluster.writes())
    assert first.pop(apimetrics.Request("POST", "tenants", "")) == 1  # kubectl's create
    # kopf adds its finalizer in a cycle of its own, before any handler runs.
    assert first.pop(FINALIZER) == 1, first
    assert sum(first.values()) <= 3, first  # one status patch, the Secret, the event
    assert first[apimetrics.Request("PATCH", "tenants", "status")] == 1, first

    # A metadata change re-runs the handler; nothing it converges changes.
    before = cluster.writes()
    touch(kubectl, "1")
    touched = apimetrics.since(before, cluster.writes())
    assert touched.pop(FINALIZER) == 1  # kubectl's annotate
    assert sum(touched.values()) <= 1, touched  # kopf's diff base, in status

    # A restart resumes every tenant: an unchanged resume writes nothing. kopf handles
    # one object's events in order, so once the next change is handled, the resume's
    # writes (if any) are in the count too.
    cluster.operator.stop()
    before = cluster.writes()
    cluster.operator.start()
    eventually(lambda: cluster.reconciles() >= 1)
    touch(kubectl, "2")
    resumed = apimetrics.since(before, cluster.writes())
    assert resumed.pop(FINALIZER) == 1  # kubectl's annotate
    assert sum(resumed.values()) <= 1, resumed
    kubectl.run("delete", "namespace", kubectl.namespace, "--wait=false", check=False)


def touch(kubectl: Kubectl, value: str) -> None:
    """Annotate the tenant and wait until the operator has handled it."""
    kubectl.run("annotate", "--overwrite", "tenant", "counted", f"touch={value}")

    def handled() -> bool:
        bookkeeping = kubectl.get("tenant", "counted")["status"].get("operator", {})
        return f'"touch":"{value}"' in bookkeeping.get("lastHandledConfiguration", "")

    eventually(handled)
