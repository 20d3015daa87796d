"""Fixtures for tests on a real Kubernetes node, reusable by any suite (a pytest plugin).

``node_cluster`` is a control plane in node mode with a node beside it, the
CRDs of ``crds/`` applied and the operator's image imported (built first by
``hack/image.sh``, cached); pods on it use ``hostNetwork: true`` and
``imagePullPolicy: Never``. Only one such cluster can run on a machine at a
time: a second run fails at once on the control plane's lock.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantdb.devenv import controlplane, node
from tests.e2e.kubectl import Kubectl

REPOSITORY = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPOSITORY / "hack" / "image.sh"
CRDS = REPOSITORY / "crds"


@dataclass(frozen=True)
class OperatorImage:
    """The operator's image: its name in containerd and the OCI archive it came from."""

    name: str
    archive: Path


@dataclass(frozen=True)
class NodeCluster:
    """A control plane in node mode and its node, the operator's image imported."""

    plane: controlplane.ControlPlane
    node: node.Node
    image: OperatorImage

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig."""
        return self.plane.kubeconfig

    def kubectl(self, namespace: str = "default") -> Kubectl:
        """kubectl as admin, bound to ``namespace``."""
        return Kubectl(self.kubeconfig, namespace)


@pytest.fixture(scope="session")
def operator_image() -> OperatorImage:
    """The image built from this tree (``make image``), on the local Debian base by default.

    ``TENANTDB_TEST_BASE_IMAGE`` names another base. An unchanged tree costs
    a hash: the archive is cached under the tree's hash.
    """
    base = os.environ.get("TENANTDB_TEST_BASE_IMAGE", "local")
    completed = subprocess.run(
        ["bash", str(IMAGE_SCRIPT), "build"],
        env={**os.environ, "BASE_IMAGE": base},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        timeout=1200,
        check=False,
    )
    lines = completed.stdout.split()
    if completed.returncode != 0 or len(lines) != 2:
        raise RuntimeError(f"hack/image.sh failed with status {completed.returncode}")
    return OperatorImage(lines[0], Path(lines[1]))


@pytest.fixture(scope="session")
def node_cluster(
    tmp_path_factory: pytest.TempPathFactory, operator_image: OperatorImage
) -> Iterator[NodeCluster]:
    """The node-mode control plane, the node, the CRDs and the operator's image."""
    work_dir = tmp_path_factory.mktemp("node-cluster")
    with (
        controlplane.ControlPlane(work_dir / "k8s", node_mode=True) as plane,
        node.Node(work_dir / "node", plane) as real_node,
    ):
        real_node.import_archive(operator_image.archive)
        cluster = NodeCluster(plane, real_node, operator_image)
        cluster.kubectl().run("apply", "--server-side", "-f", str(CRDS))
        cluster.kubectl().run("wait", "--for=condition=Established", "crd", "--all")
        yield cluster


@pytest.fixture
def node_namespace(node_cluster: NodeCluster) -> Iterator[Kubectl]:
    """kubectl as admin in a fresh namespace of ``node_cluster``; deleted afterwards."""
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    client = node_cluster.kubectl(namespace)
    client.run("create", "namespace", namespace)
    yield client
    client.run("delete", "namespace", namespace, "--wait=false", check=False)
