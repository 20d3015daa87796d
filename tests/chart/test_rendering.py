"""The chart as Helm renders it: lint, every values variant, the schema's refusals, RBAC."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import kopf
import pytest
import yaml

from tenantdb.api import GROUP, crds
from tenantdb.controllers import operator
from tests.chart import helm as helm_
from tests.chart.helm import Helm, Manifest, container, env, of_kind, one

pytestmark = pytest.mark.helm

NAMESPACED = {"watchNamespaces": ["team-a", "team-b"]}
S3 = {
    "backup.storage.type": "s3",
    "backup.storage.s3.bucket": "tenant-backups",
    "backup.storage.s3.prefix": "/prod/eu/",
    "backup.storage.s3.endpoint": "https://objects.example.com",
    "backup.storage.s3.region": "eu-west-1",
    "backup.storage.s3.pathStyle": True,
    "backup.storage.s3.credentialsSecret.name": "backup-s3",
    "backup.storage.s3.credentialsSecret.sessionTokenKey": "token",
}
VOLUME_CLAIM = {"backup.storage.type": "volume", "backup.storage.volume.existingClaim": "backups"}
VOLUME_SIZE = {"backup.storage.type": "volume", "backup.storage.volume.size": "20Gi"}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def test_lint_is_clean(helm: Helm) -> None:
    result = helm.run("lint", "--strict", str(helm_.CHART), "--set", helm_.set_required())
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_app_version_is_the_packages_version() -> None:
    chart = yaml.safe_load((helm_.CHART / "Chart.yaml").read_text())
    project = tomllib.loads((helm_.ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def test_crds_are_the_generated_ones() -> None:
    """The chart's crds/ holds exactly what the models generate (`make crds` writes both)."""
    expected = crds.files()
    shipped = {p.name: p.read_text() for p in (helm_.CHART / "crds").iterdir()}
    assert shipped == expected


def test_default_values(helm: Helm) -> None:
    manifests = helm.manifests()
    assert sorted(m.kind for m in manifests) == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",  # reading DatabaseServers' Secrets in the release's namespace
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert all(label in labels for label in RECOMMENDED_LABELS), manifest.name
        assert labels["app.kubernetes.io/version"] == _app_version()
    operator_container = container(manifests)
    assert operator_container["image"] == f"tenantdb:{_app_version()}"
    assert operator_container["args"] == [
        "run",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--readiness",
        "http://0.0.0.0:8081/readyz",
    ]
    variables = env(manifests)
    assert variables["DATABASE_URL"] == {
        "secretKeyRef": {"name": "tenantdb-database", "key": "DATABASE_URL"}
    }
    assert variables["TENANTDB_CREDENTIALS_KEY"] == {
        "secretKeyRef": {"name": "tenantdb-database", "key": "TENANTDB_CREDENTIALS_KEY"}
    }
    assert variables["TENANTDB_METRICS_PORT"] == "9090"
    assert variables["TENANTDB_ENVIRONMENT"] == "production"
    assert variables["TENANTDB_LOG_FORMAT"] == "json"
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert variables["TENANTDB_PEERING"] == "tenantdb"
    assert variables["TENANTDB_PEERING_LIFETIME"] == "15"
    assert one(manifests, "Deployment")["spec"]["replicas"] == 2
    assert one(manifests, "ClusterKopfPeering").name == "tenantdb"
    for absent in ("TENANTDB_NAMESPACE", "TENANTDB_PLANS", "TENANTDB_BACKUP_STORAGE"):
        assert absent not in variables
    service = one(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_pod_is_hardened_alive_on_kopfs_endpoint_and_ready_on_the_operators(helm: Helm) -> None:
    manifests = helm.manifests()
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    operator_container = container(manifests)
    assert operator_container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    tmp_mount = {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 - the pod's own emptyDir
    assert tmp_mount in operator_container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    for probe in ("startupProbe", "livenessProbe"):
        assert operator_container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator_container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    ports = operator_container["ports"]
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in ports
    assert {"name": "ready", "containerPort": 8081, "protocol": "TCP"} in ports
    assert operator_container["resources"]["limits"]["memory"] == "512Mi"


def test_namespaced_mode_grants_roles_in_each_listed_namespace(helm: Helm) -> None:
    manifests = helm.manifests(NAMESPACED)
    roles = of_kind(manifests, "Role")
    served = ["team-a", "team-b", "tenantdb-system"]  # and the servers' Secrets in its own
    assert sorted(r.namespace or "" for r in roles) == served
    bindings = of_kind(manifests, "RoleBinding")
    assert sorted(b.namespace or "" for b in bindings) == served
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "tenantdb", "namespace": "tenantdb-system"}
        ]
        assert binding["roleRef"]["kind"] == "Role"
    assert env(manifests)["TENANTDB_NAMESPACE"] == "team-a,team-b"


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_rbac_grants_exactly_what_the_operator_uses(helm: Helm, values: dict[str, Any]) -> None:
    """No wildcard anywhere; in the served namespaces, exactly the expected (group,
    resource, verb) triples; cluster-wide, only what kopf needs to discover."""
    manifests = helm.manifests(values)
    rules = [
        (m, rule) for m in manifests if m.kind in ("ClusterRole", "Role") for rule in m["rules"]
    ]
    for _, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in item for item in rule.get(field, [])), rule
    namespaced = expected_namespaced_grants()
    # kopf's peering: watch the peering objects, patch its own record into them.
    peerings = "kopfpeerings" if values else "clusterkopfpeerings"
    namespaced |= {("kopf.dev", peerings, v) for v in ("list", "watch", "patch")}
    discovery = {
        ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
    }
    # DatabaseServers are cluster-scoped; their Secrets are in the release's namespace.
    discovery |= {(GROUP, "databaseservers", v) for v in ("list", "watch", "patch")}
    discovery |= {(GROUP, "databaseservers/status", "patch")}
    roles = {role.name: role for role in of_kind(manifests, "Role")}
    servers = roles.pop("tenantdb-servers")
    assert servers.namespace == "tenantdb-system"
    assert _grants([(servers, rule) for rule in servers["rules"]], "Role") == {
        ("", "secrets", "get")
    }
    if values:
        discovery |= {("", "namespaces", v) for v in ("list", "watch")}
        cluster = _grants(rules, "ClusterRole")
        assert cluster == discovery
        for role in roles.values():
            assert _grants([(role, rule) for rule in role["rules"]], "Role") == namespaced
    else:
        assert not roles
        assert _grants(rules, "ClusterRole") == namespaced | discovery


def expected_namespaced_grants() -> set[tuple[str, str, str]]:
    """What the code does in a served namespace.

    kopf's handlers: list, watch and patch (finalizer, its annotations) every
    resource a handler is registered for, and patch its status subresource.
    The controllers' own calls (controllers/kube.py): credentials Secrets read,
    created and patched; core Events posted; Migrations listed and their status
    patched (covered above); a Secret owned by its Tenant, and a Backup owned by its
    BackupSchedule, with blockOwnerDeletion need ``update`` on the owner's
    ``finalizers`` where OwnerReferencesPermissionEnforcement is on. Backups read their
    Tenant; restores and final backups read, create and delete Backups; backup keys are
    Secrets created (covered by the credentials). A new handler module makes this set
    grow and the chart must follow.
    """
    assert operator.HANDLER_MODULES  # importing it registered every handler
    registry = kopf.get_default_registry()
    handled = {
        (str(handler.selector.group), str(handler.selector.any_name))
        for part in (registry._indexing, registry._watching, registry._spawning, registry._changing)
        for handler in part.get_all_handlers()
        if handler.selector is not None
    }
    cluster_scoped = {(GROUP, "databaseservers")}  # granted with the cluster-wide rules
    assert cluster_scoped <= handled
    handled -= cluster_scoped
    assert handled == {
        (GROUP, "tenants"),
        (GROUP, "migrations"),
        (GROUP, "backups"),
        (GROUP, "backupschedules"),
    }
    grants = {(g, r, v) for g, r in handled for v in ("list", "watch", "patch")}
    grants |= {(g, f"{r}/status", "patch") for g, r in handled}
    grants |= {(GROUP, "tenants", "get"), (GROUP, "backups", "get")}
    grants |= {(GROUP, "backups", v) for v in ("create", "delete")}
    grants |= {(GROUP, f"{r}/finalizers", "update") for r in ("tenants", "backupschedules")}
    grants |= {("", "secrets", v) for v in ("get", "create", "patch")}
    grants |= {("", "events", "create")}
    return grants


def _grants(rules: list[tuple[Manifest, dict[str, Any]]], kind: str) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for manifest, rule in rules
        if manifest.kind == kind
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_s3_backup_storage(helm: Helm) -> None:
    manifests = helm.manifests(S3)
    variables = env(manifests)
    assert variables["TENANTDB_BACKUP_STORAGE"] == "s3://tenant-backups/prod/eu"
    assert variables["TENANTDB_BACKUP_S3_ENDPOINT"] == "https://objects.example.com"
    assert variables["TENANTDB_BACKUP_S3_REGION"] == "eu-west-1"
    assert variables["TENANTDB_BACKUP_S3_PATH_STYLE"] == "true"
    for name, key in (
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SESSION_TOKEN", "token"),
    ):
        assert variables[name] == {"secretKeyRef": {"name": "backup-s3", "key": key}}
    assert not of_kind(manifests, "PersistentVolumeClaim")
    assert [
        v["name"] for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    ] == ["tmp"]


def test_s3_without_a_secret_uses_the_pods_identity(helm: Helm) -> None:
    values = {"backup.storage.type": "s3", "backup.storage.s3.bucket": "tenant-backups"}
    variables = env(helm.manifests(values))
    assert variables["TENANTDB_BACKUP_STORAGE"] == "s3://tenant-backups"
    assert not {"AWS_ACCESS_KEY_ID", "TENANTDB_BACKUP_S3_ENDPOINT"} & set(variables)


@pytest.mark.parametrize("values", [VOLUME_CLAIM, VOLUME_SIZE], ids=["existing-claim", "created"])
def test_volume_backup_storage(helm: Helm, values: dict[str, Any]) -> None:
    manifests = helm.manifests(values)
    assert env(manifests)["TENANTDB_BACKUP_STORAGE"] == "file:///var/lib/tenantdb/backups"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    claim = "backups" if values is VOLUME_CLAIM else "tenantdb-backups"
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
    mounts = container(manifests)["volumeMounts"]
    assert {"name": "backups", "mountPath": "/var/lib/tenantdb/backups"} in mounts
    created = of_kind(manifests, "PersistentVolumeClaim")
    if values is VOLUME_CLAIM:
        assert not created
    else:
        assert [c.name for c in created] == ["tenantdb-backups"]
        assert created[0]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert created[0]["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_two_replicas(helm: Helm) -> None:
    manifests = helm.manifests({"replicas": 2})
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert one(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_peering_objects_follow_the_watched_namespaces(helm: Helm) -> None:
    namespaced = helm.manifests(NAMESPACED)
    peerings = of_kind(namespaced, "KopfPeering")
    assert sorted(p.namespace or "" for p in peerings) == ["team-a", "team-b"]
    assert not of_kind(namespaced, "ClusterKopfPeering")
    joining = helm.manifests({"peering.create": False, "peering.name": "shared"})
    assert not of_kind(joining, "ClusterKopfPeering")
    assert env(joining)["TENANTDB_PEERING"] == "shared"
    standalone = helm.manifests({"peering.enabled": False})
    assert not {"TENANTDB_PEERING", "POD_UID"} & set(env(standalone))
    assert not of_kind(standalone, "ClusterKopfPeering")
    assert "kopf.dev" not in json.dumps(of_kind(standalone, "ClusterRole")[0]["rules"])


def test_host_network_recreates_instead_of_rolling(helm: Helm) -> None:
    deployment = one(helm.manifests({"hostNetwork": True}), "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_settings_reach_the_operator(helm: Helm) -> None:
    values = {
        "plans": {"gold": {"connection_limit": 50, "statement_timeout": "2min"}},
        "environment": "staging",
        "database.publicHost": "db.example.com",
        "credentialsKey.existingSecret": "tenantdb-key",
        "concurrency.poolMaxSize": 32,
        "tuning.lockWait": 2.5,
        "tuning.maxStatementTimeout": "1h",
        "tuning.watchdogInterval": 0,
        "log": {"format": "full", "level": "debug"},
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
    }
    manifests = helm.manifests(values)
    variables = env(manifests)
    assert json.loads(variables["TENANTDB_PLANS"]) == values["plans"]
    assert variables["TENANTDB_ENVIRONMENT"] == "staging"
    assert variables["TENANTDB_PUBLIC_HOST"] == "db.example.com"
    assert variables["TENANTDB_CREDENTIALS_KEY"]["secretKeyRef"]["name"] == "tenantdb-key"
    assert variables["TENANTDB_POOL_MAX_SIZE"] == "32"
    assert variables["TENANTDB_LOCK_WAIT"] == "2.5"
    assert variables["TENANTDB_MAX_STATEMENT_TIMEOUT"] == "1h"
    assert variables["TENANTDB_WATCHDOG_INTERVAL"] == "0"
    assert variables["TENANTDB_LOG_FORMAT"] == "full"
    assert variables["EXTRA"] == "1"
    assert "--verbose" in container(manifests)["args"]


def test_optional_objects(helm: Helm) -> None:
    values = {
        "metrics.serviceMonitor.enabled": True,
        "networkPolicy.enabled": True,
        "networkPolicy.metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
    }
    manifests = helm.manifests(values)
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    policy = one(manifests, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    disabled = helm.manifests({"metrics.enabled": False, "podDisruptionBudget.enabled": False})
    assert not {"Service", "ServiceMonitor", "PodDisruptionBudget"} & {m.kind for m in disabled}
    assert "TENANTDB_METRICS_PORT" not in env(disabled)


REFUSED = [
    ({"database.existingSecret": ""}, "at '/database/existingSecret': minLength: got 0, want 1"),
    ({"environment": "prod"}, "value must be one of 'production', 'staging', 'development'"),
    ({"watchNamespace": ["team-a"]}, "additional properties 'watchNamespace' not allowed"),
    ({"watchNamespaces": ["team-*"]}, "at '/watchNamespaces/0': 'team-*' does not match pattern"),
    (
        {"backup.storage.type": "gcs"},
        "at '/backup/storage/type': value must be one of 'none', 'volume', 's3'",
    ),
    (
        {"backup.storage.type": "volume"},
        "at '/backup/storage/volume/existingClaim': minLength: got 0, want 1",
    ),
    ({"backup.storage.type": "s3"}, "at '/backup/storage/s3/bucket': minLength: got 0, want 3"),
    ({"backup.storage.s3.endpoint": "objects.example.com"}, "at '/backup/storage/s3/endpoint'"),
    (
        {"plans": {"gold": {"max_connections": 5}}},
        "additional properties 'max_connections' not allowed",
    ),
    ({"plans": {"gold": {"statement_timeout": "2 minutes"}}}, "at '/plans/gold/statement_timeout'"),
    ({"plans": {"Gold": {}}}, "invalid propertyName 'Gold'"),
    ({"tuning.maxLockTimeout": "5 minutes"}, "at '/tuning/maxLockTimeout'"),
    ({"tuning.lockWait": "soon"}, "at '/tuning/lockWait'"),
    ({"log.format": "text"}, "at '/log/format': value must be one of 'full', 'json'"),
    ({"replicas": -1}, "at '/replicas': minimum: got -1, want 0"),
    ({"metrics.port": 8080}, "metrics.port and health.port must differ (both are 8080)"),
    (
        {"health.readinessPort": 8080},
        "health.readinessPort and health.port must differ (both are 8080)",
    ),
    ({"metrics.port": 8081}, "metrics.port and health.readinessPort must differ (both are 8081)"),
    (
        {"concurrency.poolMinSize": 20},
        "concurrency.poolMinSize (20) must not exceed concurrency.poolMaxSize (16)",
    ),
    (
        {"metrics.enabled": False, "metrics.serviceMonitor.enabled": True},
        "metrics.serviceMonitor.enabled needs metrics.enabled",
    ),
    (
        {"serviceAccount.create": False},
        "serviceAccount.create is false: name the existing account in serviceAccount.name",
    ),
]


@pytest.mark.parametrize(("values", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_schema_refuses_what_the_chart_cannot_honour(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    result = helm.template(values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def _app_version() -> str:
    return str(yaml.safe_load((helm_.CHART / "Chart.yaml").read_text())["appVersion"])
