"""End-to-end fixtures: the operator as a real process, kubectl, namespaces."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantdb.devenv import operator_process
from tests.e2e.kubectl import Kubectl


@pytest.fixture
def kubectl(kubeconfig: Path, operator: operator_process.OperatorProcess) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace watched by the operator; deleted afterwards."""
    yield from _in_new_namespace(kubeconfig)


@pytest.fixture
def api_only(kubeconfig: Path) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace, for tests of the API server alone."""
    yield from _in_new_namespace(kubeconfig)


def _in_new_namespace(kubeconfig: Path) -> Iterator[Kubectl]:
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    client = Kubectl(kubeconfig, namespace)
    client.run("create", "namespace", namespace)
    yield client
    client.run("delete", "namespace", namespace, "--wait=false", check=False)
