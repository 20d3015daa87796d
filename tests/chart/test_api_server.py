"""The chart against a real API server: every rendered object passes the server's
own validation, and the RBAC it grants is all the operator needs.

The dry runs use the session's control plane. The RBAC proof installs the
chart for real with ``helm install`` into a control plane of its own (so no
other operator serves its namespaces), then runs ``tenantdb run`` with nothing
but the chart's ServiceAccount token, and drives a Tenant and a Migration
through it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantdb.api import GROUP, crds, peering
from tenantdb.devenv import controlplane, operator_process, processes
from tests.chart import helm as helm_
from tests.chart.helm import Helm
from tests.e2e.kubectl import Kubectl
from tests.security import rbac

pytestmark = [pytest.mark.helm, pytest.mark.kube]

CRD_NAMES = [f"crd/{kind.plural}.{GROUP}" for kind in crds.KINDS] + [
    f"crd/{kind.lower()}s.{peering.GROUP}" for kind in peering.SCOPES
]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["{ns}-a", "{ns}-b"]},
    "s3": {
        "backup.storage.type": "s3",
        "backup.storage.s3.bucket": "tenant-backups",
        "backup.storage.s3.endpoint": "https://objects.example.com",
        "backup.storage.s3.pathStyle": True,
        "backup.storage.s3.credentialsSecret.name": "backup-s3",
    },
    "volume": {"backup.storage.type": "volume", "backup.storage.volume.size": "5Gi"},
    "everything": {
        "replicas": 2,
        "hostNetwork": True,
        "networkPolicy.enabled": True,
        "networkPolicy.metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
        "networkPolicy.egress": [{"ports": [{"port": 5432, "protocol": "TCP"}]}],
        "podAnnotations": {"example.com/scrape": "true"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "tenantdb"}
                            },
                        },
                    }
                ]
            }
        },
        "priorityClassName": "",
        "plans": {"gold": {"connection_limit": 50}},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
    },
}


@pytest.fixture(scope="module")
def admin(kubeconfig: Path) -> Kubectl:
    """The session's API server, with the chart's own CRDs applied for real."""
    client = Kubectl(kubeconfig, "default")
    client.run("apply", "--server-side", "--force-conflicts", "-f", str(helm_.CHART / "crds"))
    client.run("wait", "--for=condition=Established", "--timeout=60s", *CRD_NAMES)
    return client


@pytest.fixture
def namespace(admin: Kubectl) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    yield name
    for suffix in ("", "-a", "-b"):
        admin.run("delete", "namespace", name + suffix, "--wait=false", check=False)


def test_the_crds_served_are_the_charts(admin: Kubectl, namespace: str) -> None:
    admin.run("create", "namespace", namespace)
    for kind in crds.KINDS:
        served = admin.get("crd", f"{kind.plural}.{GROUP}")
        shipped = yaml.safe_load((helm_.CHART / "crds" / crds.file_name(kind)).read_text())
        assert served["spec"]["versions"][0]["schema"] == shipped["spec"]["versions"][0]["schema"]
    example = (helm_.ROOT / "examples" / "tenant.yaml").read_text()
    result = Kubectl(admin.kubeconfig, namespace).run(
        "apply", "--dry-run=server", "-f", "-", stdin=example
    )
    assert "tenant.tenantdb.io/acme created (server dry run)" in result.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_passes_server_validation(
    helm: Helm, admin: Kubectl, namespace: str, variant: str
) -> None:
    values = json.loads(json.dumps(VARIANTS[variant]).replace("{ns}", namespace))
    for name in [namespace, *values.get("watchNamespaces", [])]:
        admin.run("create", "namespace", name)
    manifests = helm.manifests(values, namespace=namespace, release=f"t-{namespace}")
    assert manifests
    applied = []
    for where in sorted({m.namespace or namespace for m in manifests}):
        items = [m for m in manifests if (m.namespace or namespace) == where]
        listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        result = Kubectl(admin.kubeconfig, where).run(
            "apply", "--dry-run=server", "-o", "name", "-f", "-", stdin=listed
        )
        applied += result.stdout.split()
    applied.sort()
    expected = sorted(f"{_resource(m)}/{m.name}" for m in manifests)
    assert applied == expected


def _resource(manifest: helm_.Manifest) -> str:
    """The ``kind.group`` kubectl's ``-o name`` prints."""
    group = manifest["apiVersion"].rpartition("/")[0]
    kind = manifest.kind.lower()
    return f"{kind}.{group}" if group else kind


def test_helm_install_dry_run_prints_what_to_do_next(
    helm: Helm, admin: Kubectl, namespace: str
) -> None:
    admin.run("create", "namespace", namespace)
    admin.run("create", "namespace", f"{namespace}-a")
    result = helm.run(
        "install",
        "tenantdb",
        str(helm_.CHART),
        "--kubeconfig",
        str(admin.kubeconfig),
        "--namespace",
        namespace,
        "--dry-run=server",
        "--set",
        helm_.set_required(),
        "--set-json",
        f'watchNamespaces=["{namespace}-a"]',
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {namespace}-a apply -f -" in notes
    assert f"kubectl -n {namespace}-a wait --for=condition=Ready tenant/acme" in notes
    assert "Secret acme-credentials" in notes
    assert "leaves the CRDs" in notes


# --- The RBAC proof: the operator with nothing but the chart's ServiceAccount ---


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A control plane of its own, without CRDs: `helm install` brings them."""
    with controlplane.ControlPlane(tmp_path_factory.mktemp("chart-k8s")) as plane:
        yield plane.kubeconfig


MODES = {"cluster": False, "namespaced": True}


@pytest.mark.postgres
@pytest.mark.operator
@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_operator_works_with_the_charts_rbac_alone(
    helm: Helm,
    own_cluster: Path,
    operator_url: str,
    tmp_path: Path,
    mode: str,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    release, release_namespace, served = f"tenantdb-{mode}", f"tenantdb-{suffix}", f"team-{suffix}"
    admin = Kubectl(own_cluster, release_namespace)
    for name in (release_namespace, served):
        admin.run("create", "namespace", name)
    values = {"watchNamespaces": [served]} if MODES[mode] else {}
    install = helm.run(
        "install",
        release,
        str(helm_.CHART),
        "--kubeconfig",
        str(own_cluster),
        "--namespace",
        release_namespace,
        "--set",
        helm_.set_required(),
        "--set-json",
        f"watchNamespaces={json.dumps(values.get('watchNamespaces', []))}",
    )
    assert "STATUS: deployed" in install.stdout
    admin.run("wait", "--for=condition=Established", "--timeout=60s", *CRD_NAMES)

    token = admin.run("create", "token", release, "--duration=3600s").stdout.strip()
    account_config = rbac.token_kubeconfig(own_cluster, token, tmp_path / "operator.kubeconfig")
    log = tmp_path / "operator.log"
    settings = {
        "TENANTDB_METRICS_PORT": str(processes.free_port()),
        "POD_NAME": f"chart-{mode}",
        "TENANTDB_PEERING": release,  # the chart's peering object, on its RBAC alone
    }
    if MODES[mode]:
        settings["TENANTDB_NAMESPACE"] = served
    process = operator_process.OperatorProcess(
        account_config, operator_url, log, extra_env=settings
    )
    process.start()
    try:
        _drive_a_tenant_and_a_migration(Kubectl(own_cluster, served))
    finally:
        process.stop()
    text = log.read_text()
    for refusal in ("Forbidden", "forbidden", "Not enough permissions"):
        assert refusal not in text, _lines_with(text, refusal)

    kept = Kubectl(own_cluster, served)
    helm.run("uninstall", release, "--kubeconfig", str(own_cluster), "-n", release_namespace)
    assert kept.get("tenant", "kept")["metadata"]["name"] == "kept"
    for name in CRD_NAMES:
        assert kept.run("get", name).returncode == 0
    assert admin.run("get", "serviceaccount", release, check=False).returncode != 0


def _drive_a_tenant_and_a_migration(user: Kubectl) -> None:
    """Create, migrate, and delete a Tenant; leave one more for the uninstall check."""
    docs = [
        {
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"isolation": "schema", "deletionPolicy": "Delete"},
        }
        for name in ("acme", "kept")
    ]
    user.apply(yaml.safe_dump_all(docs))
    for name in ("acme", "kept"):
        user.wait(f"tenant/{name}", "condition=Ready", timeout=120)
    assert set(user.secret_data("acme-credentials")) >= {"uri", "username", "password"}
    migration = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "probe"},
        "spec": {"version": 1, "up": "CREATE TABLE chart_probe (id int)"},
    }
    user.apply(yaml.safe_dump(migration))
    user.wait("migration/probe", "condition=Ready", timeout=120)
    assert user.get("migration", "probe")["status"]["tenants"]["applied"] == 2
    assert any(e["reason"] == "Provisioned" for e in user.events("acme"))
    user.run("delete", "tenant", "acme", "--timeout=120s")


def _lines_with(text: str, word: str) -> str:
    return "\n".join(line for line in text.splitlines() if word in line)[-4000:]
