"""The Helm chart on a real node: `helm install` with this environment's values, the
operator's pod Ready on its kubelet-projected ServiceAccount token (so the chart's RBAC
is what it runs on), Tenants Ready with working Secrets; a standby release in the same
peering takes over a Migration's rollout when the active pod is killed, and the ledger
shows every tenant migrated once; `helm upgrade` rolls the pod and loses no work;
the metrics the Service selects move during a rollout; `helm uninstall` leaves the
CRDs, the Tenants and their data; in namespaced mode the token reads no Secret outside
its namespaces; a pod whose database is unreachable stays up, not Ready, retrying.

The node has only host networking: pods use ``hostNetwork: true``, so each release gets
free health and metrics ports and two replicas are two releases (REAL-NODE-NOTES).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tenantdb.devenv import processes
from tests.chart import helm as helm_
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import Forwarder, connect, eventually
from tests.node.fixtures import NodeCluster
from tests.security import rbac

pytestmark = [pytest.mark.node, pytest.mark.kube, pytest.mark.postgres, pytest.mark.helm]

ACTIVE_PRIORITY, STANDBY_PRIORITY = 200, 100
"""Fixed priorities, so the test knows which release is active (pods derive theirs
from their UIDs otherwise; tests/unit/test_peering.py covers that)."""
TENANTS = 20
PROBE = "CREATE TABLE ha_probe (id int); INSERT INTO ha_probe VALUES (1); SELECT pg_sleep(0.4)"
"""Applied twice, it would fail on CREATE TABLE; applied once, one row per tenant."""


@dataclass(frozen=True)
class Release:
    """One `helm install` of the chart in its own namespace."""

    helm: helm_.Helm
    kubeconfig: Path
    name: str
    namespace: str

    def run(self, verb: str, *args: str) -> str:
        where = ("--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace)
        return self.helm.run(verb, self.name, *args, *where).stdout

    def install(self, values: dict[str, Any], *flags: str) -> None:
        self.run("install", str(helm_.CHART), *_pairs(values), *flags)

    @property
    def fullname(self) -> str:
        return self.name if "tenantdb" in self.name else f"{self.name}-tenantdb"

    def logs(self, kubectl: Kubectl) -> str:
        return kubectl.run("logs", f"deploy/{self.fullname}", check=False).stdout


def _pairs(values: dict[str, Any]) -> list[str]:
    return [
        arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def node_values(cluster: NodeCluster, priority: int | None = None) -> dict[str, Any]:
    """What this environment needs: host networking, the imported image, free ports."""
    repository, _, tag = cluster.image.name.rpartition(":")
    extra = [{"name": "TENANTDB_RETRY_DELAY", "value": "2"}]
    if priority is not None:
        extra.append({"name": "TENANTDB_PRIORITY", "value": str(priority)})
    return {
        "hostNetwork": True,
        "replicas": 1,
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        "database.existingSecret": "tenantdb-database",
        "health.port": processes.free_port(),
        "health.readinessPort": processes.free_port(),
        "metrics.port": processes.free_port(),
        "log.format": "full",
        "resources.requests": {"cpu": "10m", "memory": "64Mi"},
        "extraEnv": extra,
    }


@pytest.fixture(scope="module")
def helm() -> helm_.Helm:
    return helm_.Helm(helm_.find_binary())


@pytest.fixture(scope="module")
def system(node_cluster: NodeCluster, operator_url: str) -> Iterator[Kubectl]:
    """The releases' namespace, with the database Secret the chart expects."""
    namespace = f"tdb-{uuid.uuid4().hex[:6]}"
    kubectl = node_cluster.kubectl(namespace)
    kubectl.run("create", "namespace", namespace)
    kubectl.run(
        "create",
        "secret",
        "generic",
        "tenantdb-database",
        f"--from-literal=DATABASE_URL={operator_url}",
        f"--from-literal=TENANTDB_CREDENTIALS_KEY={os.environ['TENANTDB_CREDENTIALS_KEY']}",
    )
    yield kubectl
    kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def active(node_cluster: NodeCluster, helm: helm_.Helm, system: Kubectl) -> Iterator[Release]:
    """The chart installed cluster-wide, its pod Ready."""
    release = Release(helm, node_cluster.kubeconfig, "tenantdb", system.namespace)
    release.install(node_values(node_cluster, ACTIVE_PRIORITY), "--wait", "--timeout=180s")
    yield release
    release.helm.run(
        "uninstall",
        release.name,
        "--kubeconfig",
        str(release.kubeconfig),
        "-n",
        release.namespace,
        check=False,
    )


@pytest.fixture(scope="module")
def apps(node_cluster: NodeCluster) -> Iterator[Kubectl]:
    namespace = f"apps-{uuid.uuid4().hex[:6]}"
    kubectl = node_cluster.kubectl(namespace)
    kubectl.run("create", "namespace", namespace)
    yield kubectl
    kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


def apply_tenants(kubectl: Kubectl, names: list[str]) -> None:
    docs = [
        {
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"isolation": "schema"},
        }
        for name in names
    ]
    kubectl.apply(yaml.safe_dump_all(docs))


def apply_migration(kubectl: Kubectl, name: str, version: int, up: str) -> None:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {"version": version, "up": up, "strategy": {"maxParallel": 1}},
    }
    kubectl.apply(yaml.safe_dump(body))


def applied(kubectl: Kubectl, name: str) -> int:
    status = kubectl.get("migration", name).get("status") or {}
    return int((status.get("tenants") or {}).get("applied") or 0)


def probe_rows(admin: psycopg.Connection[Any], kubectl: Kubectl, tenant: str) -> int:
    schema = kubectl.get("tenant", tenant)["status"]["schema"]
    row = admin.execute(f'SELECT count(*) FROM "{schema}".ha_probe').fetchone()
    return int(row[0]) if row else 0


def ledger_rows(admin: psycopg.Connection[Any], namespace: str, version: int) -> dict[str, int]:
    rows = admin.execute(
        "SELECT tenant_name, count(*) FROM tenantdb.migration_ledger"
        " WHERE namespace = %s AND version = %s AND state = 'applied' GROUP BY tenant_name",
        (namespace, version),
    ).fetchall()
    return {str(name): int(count) for name, count in rows}


def peering_paused(log: str) -> bool:
    """Whether kopf's last word in an operator's log leaves it paused (a peered operator
    starts paused, and logs only when it pauses or resumes)."""
    moves = re.findall(r"(Pausing|Resuming) operations", log)
    return not moves or moves[-1] == "Pausing"


def since_paused(log: str) -> str:
    """What an operator logged since kopf last paused it."""
    return log.rpartition("Pausing operations")[2]


def sigkill_operator(cluster: NodeCluster, system: Kubectl, release: Release) -> float:
    """SIGKILL the release's operator process (no clean exit: its peering record stays
    until it expires); the monotonic time it was killed."""
    selector = f"app.kubernetes.io/instance={release.name}"
    pod = system.run("get", "pod", "-l", selector, "-o", "jsonpath={.items[0].metadata.name}")
    listed = cluster.node.crictl("ps", "--label", f"io.kubernetes.pod.name={pod.stdout}", "-q")
    pid = int(json.loads(cluster.node.crictl("inspect", listed.split()[0]))["info"]["pid"])
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def test_installed_operator_serves_a_tenant_on_the_charts_token(
    active: Release, system: Kubectl, apps: Kubectl, operator_url: str
) -> None:
    pod = system.get("pod", system.run("get", "pod", "-o", "name").stdout.split()[0].split("/")[1])
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["serviceAccountName"] == active.fullname
    assert pod["status"]["containerStatuses"][0]["ready"]
    apply_tenants(apps, ["first"])
    apps.wait("tenant/first", "condition=Ready", timeout=120)
    credentials = apps.secret_data("first-credentials")
    with connect(credentials) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None and row[0] == credentials["username"]
    log = active.logs(system)
    for refusal in ("Forbidden", "forbidden"):
        assert refusal not in log
    assert f"[{apps.namespace}/first]" in log  # lines about an object name it
    database_password = psycopg.conninfo.conninfo_to_dict(operator_url)["password"]
    for secret in (credentials["password"], database_password):
        assert str(secret) not in log


def test_the_charts_pod_runs_as_its_non_root_user_on_a_read_only_root(
    active: Release, system: Kubectl
) -> None:
    exec_ = ("exec", f"deploy/{active.fullname}", "--")
    pod_spec = system.get("deploy", active.fullname)["spec"]["template"]["spec"]
    user = pod_spec["securityContext"]["runAsUser"]
    assert user != 0 and system.run(*exec_, "id", "-u").stdout.strip() == str(user)
    refused = system.run(*exec_, "touch", "/app/written", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert system.run(*exec_, "touch", "/tmp/written").returncode == 0  # noqa: S108
    # Nothing but the projected token tells the client where the API server is.
    environment = system.run(*exec_, "env").stdout
    assert "KUBECONFIG" not in environment
    assert "KUBERNETES_SERVICE_HOST=127.0.100.1" in environment


def test_standby_release_takes_over_a_rollout_when_the_active_pod_is_killed(
    node_cluster: NodeCluster,
    active: Release,
    system: Kubectl,
    apps: Kubectl,
    admin: psycopg.Connection[Any],
) -> None:
    standby = Release(active.helm, active.kubeconfig, "standby", system.namespace)
    values = {
        **node_values(node_cluster, STANDBY_PRIORITY),
        "peering.name": active.fullname,
        "peering.create": False,
    }
    standby.install(values, "--skip-crds", "--wait", "--timeout=180s")
    try:
        eventually(lambda: "tenantdb operator started" in standby.logs(system), timeout=60)
        assert not peering_paused(active.logs(system))
        # A standby that starts while the active's keep-alive is late (a loaded machine)
        # works until the next one arrives; what must hold is that it then pauses.
        eventually(lambda: peering_paused(standby.logs(system)), timeout=60)
        # Its own background work reads the peering on the chart's RBAC, and waits too.
        paused = "background work paused (standby)"
        eventually(lambda: paused in standby.logs(system), timeout=60)
        assert "unreadable" not in standby.logs(system)
        names = [f"ha-{index:02d}" for index in range(TENANTS)]
        apply_tenants(apps, names)
        for name in names:
            apps.wait(f"tenant/{name}", "condition=Ready", timeout=180)
        assert "Handler 'reconcile'" not in since_paused(standby.logs(system)), "it worked"

        apply_migration(apps, "probe", 1, PROBE)
        eventually(lambda: applied(apps, "probe") >= 3, timeout=120)
        killed = sigkill_operator(node_cluster, system, active)
        # No restart in place: the pod goes too, as when its node is lost.
        system.run("scale", f"deploy/{active.fullname}", "--replicas=0")
        eventually(lambda: not peering_paused(standby.logs(system)), timeout=120)
        takeover = time.monotonic() - killed
        eventually(lambda: "background work resumed" in standby.logs(system), timeout=60)
        print(f"standby resumed {takeover:.1f}s after the active pod was killed")
        apps.wait("migration/probe", "jsonpath={.status.phase}=Succeeded", timeout=300)
    finally:
        standby.run("uninstall")
    assert ledger_rows(admin, apps.namespace, 1) == {name: 1 for name in [*names, "first"]}
    for name in [*names, "first"]:
        assert probe_rows(admin, apps, name) == 1, name
    # kopf's bound: the killed pod's record expires peering.lifetime (15 s) after its last
    # keep-alive, sent every 5-10 s; the standby then resumes at once.
    assert takeover < 15 + 10


def test_upgrade_rolls_the_pod_and_loses_no_work(
    active: Release, system: Kubectl, apps: Kubectl, admin: psycopg.Connection[Any]
) -> None:
    system.run("rollout", "status", f"deploy/{active.fullname}", "--timeout=180s")
    before = system.get("deploy", active.fullname)["metadata"]["generation"]
    apply_tenants(apps, ["late"])
    active.run(
        "upgrade",
        str(helm_.CHART),
        "--reuse-values",
        "--set-json",
        'podAnnotations={"example.com/revision":"2"}',
    )
    apply_migration(apps, "second", 2, "CREATE TABLE upgraded (id int)")
    system.run("rollout", "status", f"deploy/{active.fullname}", "--timeout=180s")
    assert system.get("deploy", active.fullname)["metadata"]["generation"] > before
    apps.wait("tenant/late", "condition=Ready", timeout=180)
    apps.wait("migration/second", "jsonpath={.status.phase}=Succeeded", timeout=180)
    assert ledger_rows(admin, apps.namespace, 2) == {
        name: 1 for name in ["first", "late", *[f"ha-{i:02d}" for i in range(TENANTS)]]
    }


def metrics_endpoint(system: Kubectl, release: Release) -> str:
    """The pod and port the release's metrics Service selects: its selector's pod, the
    container port its ``targetPort`` names, at the pod's IP."""
    service = system.get("service", f"{release.fullname}-metrics")["spec"]
    selector = ",".join(f"{key}={value}" for key, value in service["selector"].items())
    (pod,) = json.loads(system.run("get", "pod", "-l", selector, "-o", "json").stdout)["items"]
    (target,) = [p["targetPort"] for p in service["ports"] if p["name"] == "metrics"]
    ports = {p.get("name"): p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    return f"http://{pod['status']['podIP']}:{ports[target]}/metrics"


def scrape_url(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        lines = response.read().decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines)
        if name and not name.startswith("#")
    }


def test_metrics_behind_the_service_move_during_a_rollout(
    active: Release, system: Kubectl, apps: Kubectl
) -> None:
    """Scraped at the pod and port the metrics Service selects, not at its ClusterIP: this
    node runs no kube-proxy (traffic stays on loopback), so no ClusterIP routes anywhere,
    and its hostNetwork pods have the loopback address, which the API server refuses in
    Endpoints; the Service's selector and named targetPort are what lead to the pod."""
    url = metrics_endpoint(system, active)
    ready = 'tenantdb_tenant_objects{isolation="schema",phase="Ready"}'
    # The pod the upgrade started counts the Tenants as its watch delivers them.
    eventually(lambda: scrape_url(url).get(ready, 0) >= TENANTS, timeout=60)
    before = scrape_url(url)
    applied = 'tenantdb_migration_tenants{state="applied"}'
    apply_migration(apps, "third", 3, "CREATE TABLE metered (id int); SELECT pg_sleep(0.3)")
    seen = [before[applied]]

    def moving() -> bool:
        samples = scrape_url(url)
        seen.append(samples[applied])
        return samples.get('tenantdb_migrations{phase="Running"}', 0) >= 1 and seen[-1] > seen[0]

    eventually(moving, timeout=120)
    apps.wait("migration/third", "jsonpath={.status.phase}=Succeeded", timeout=180)
    after = scrape_url(url)
    assert after[applied] >= before[applied] + TENANTS
    rollouts = "tenantdb_migration_rollout_seconds_count"
    assert after[rollouts] > before.get(rollouts, 0)
    passes = 'tenantdb_reconcile_duration_seconds_count{kind="Migration"}'
    assert after[passes] > before[passes]


def test_uninstall_leaves_crds_tenants_and_their_data(
    active: Release, system: Kubectl, apps: Kubectl, admin: psycopg.Connection[Any]
) -> None:
    status = apps.get("tenant", "first")["status"]
    active.run("uninstall", "--wait")
    assert apps.get("tenant", "first")["metadata"]["name"] == "first"
    for crd in ("tenants.tenantdb.io", "migrations.tenantdb.io", "clusterkopfpeerings.kopf.dev"):
        assert apps.run("get", "crd", crd).returncode == 0
    schema = admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (status["schema"],)
    ).fetchone()
    role = admin.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (status["role"],))
    assert schema == (1,) and role.fetchone() == (1,)
    credentials = apps.secret_data("first-credentials")
    with connect(credentials) as conn:
        assert conn.execute("SELECT count(*) FROM ha_probe").fetchone() == (1,)


def test_namespaced_token_reads_no_secret_outside_its_namespaces(
    node_cluster: NodeCluster, helm: helm_.Helm, system: Kubectl, tmp_path: Path
) -> None:
    """Only the RBAC matters here: the release runs no pod (replicas 0)."""
    served, other = (f"{system.namespace}-{side}" for side in ("a", "b"))
    for name in (served, other):
        system.run("create", "namespace", name)
    release = Release(helm, node_cluster.kubeconfig, "scoped", system.namespace)
    release.install({**node_values(node_cluster), "replicas": 0, "watchNamespaces": [served]})
    account = f"system:serviceaccount:{system.namespace}:{release.fullname}"
    try:

        def can(*args: str) -> str:
            result = system.run("auth", "can-i", f"--as={account}", *args, check=False)
            return result.stdout.strip()

        assert can("get", "secrets", "-n", served) == "yes"
        assert can("get", "secrets", "-n", other) == "no"
        assert can("list", "secrets", "--all-namespaces") == "no"
        token = system.run("create", "token", release.fullname, "--duration=600s").stdout.strip()
        config = rbac.token_kubeconfig(node_cluster.kubeconfig, token, tmp_path / "token")
        as_account = Kubectl(config, other)
        refused = as_account.run("get", "secrets", check=False)
        assert refused.returncode != 0 and "Forbidden" in refused.stderr
        everywhere = as_account.run("get", "secrets", "--all-namespaces", check=False)
        assert everywhere.returncode != 0 and "Forbidden" in everywhere.stderr
        allowed = Kubectl(config, served).run("get", "secret", "absent", check=False)
        assert "NotFound" in allowed.stderr  # allowed to ask: the Secret just is not there
    finally:
        release.run("uninstall")


def test_a_pod_that_cannot_reach_its_database_is_alive_not_ready_and_retries(
    node_cluster: NodeCluster, helm: helm_.Helm, system: Kubectl, operator_url: str
) -> None:
    """The release's Secret names a loopback port where nothing listens: the pod runs,
    is not Ready, and its log says why; once a forwarder to the real PostgreSQL opens on
    that port, the same container (no restart) becomes Ready."""
    port = processes.free_port()
    system.run(
        "create",
        "secret",
        "generic",
        "nodb-database",
        "--from-literal=DATABASE_URL="
        + psycopg.conninfo.make_conninfo(operator_url, port=str(port)),
        f"--from-literal=TENANTDB_CREDENTIALS_KEY={os.environ['TENANTDB_CREDENTIALS_KEY']}",
    )
    served = f"{system.namespace}-nodb"
    system.run("create", "namespace", served)
    release = Release(helm, node_cluster.kubeconfig, "nodb", system.namespace)
    values = {
        **node_values(node_cluster),
        "database.existingSecret": "nodb-database",
        "watchNamespaces": [served],
    }
    release.install(values, "--skip-crds")
    selector = f"app.kubernetes.io/instance={release.name}"

    def pod() -> dict[str, Any]:
        listed = system.run("get", "pod", "-l", selector, "-o", "json").stdout
        items = json.loads(listed)["items"]
        return items[0] if items else {}

    def container() -> dict[str, Any]:
        statuses = (pod().get("status") or {}).get("containerStatuses") or [{}]
        return dict(statuses[0])

    try:
        eventually(lambda: "running" in (container().get("state") or {}), timeout=120)
        eventually(lambda: "not ready: DatabaseUnavailable" in release.logs(system), timeout=90)
        eventually(lambda: "attempt 3" in release.logs(system), timeout=90)  # still retrying
        assert container()["ready"] is False and container()["restartCount"] == 0
        params = psycopg.conninfo.conninfo_to_dict(operator_url)
        forwarder = Forwarder(port, (str(params["host"]), int(str(params["port"]))))
        try:
            name = pod()["metadata"]["name"]
            system.wait(f"pod/{name}", "condition=Ready", timeout=120)
            assert container()["restartCount"] == 0
            assert "tenantdb operator started" in release.logs(system)
        finally:
            forwarder.close()
    finally:
        release.run("uninstall")
