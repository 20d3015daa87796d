"""The node itself: Deployments become running pods, and one node-mode control plane
at a time holds 127.0.100.1:443."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantdb.devenv import controlplane, processes
from tests.e2e.kubectl import Kubectl
from tests.node import manifests
from tests.node.fixtures import NodeCluster

pytestmark = [pytest.mark.node, pytest.mark.kube]


def test_a_deployment_gets_a_running_pod_on_the_node(
    node_namespace: Kubectl, node_cluster: NodeCluster
) -> None:
    pod = json.loads(
        manifests.command_pod(
            "sleeper", node_cluster.image.name, ["python3", "-c", "import time; time.sleep(3600)"]
        )
    )
    pod["metadata"] = {"labels": {"app": "sleeper"}}
    pod["spec"]["restartPolicy"] = "Always"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {"metadata": pod["metadata"], "spec": pod["spec"]},
        },
    }
    node_namespace.apply(json.dumps(deployment))
    node_namespace.run("rollout", "status", "deployment/sleeper", "--timeout=120s")
    pods = json.loads(node_namespace.run("get", "pods", "-l", "app=sleeper", "-o", "json").stdout)
    [running] = pods["items"]
    assert running["spec"]["nodeName"] == "127.0.0.1"
    assert running["status"]["phase"] == "Running"


def test_a_second_node_mode_control_plane_is_refused(
    node_cluster: NodeCluster, tmp_path: Path
) -> None:
    second = controlplane.ControlPlane(
        tmp_path, controlplane.find_binaries(build=False), node_mode=True
    )
    with pytest.raises(processes.DevEnvError, match=r"already serves 127\.0\.100\.1:443"):
        second.start()
    assert second.pids == {}
    assert node_cluster.plane.api_get("/readyz")[0] == 200
