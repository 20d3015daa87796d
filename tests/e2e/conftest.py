"""End-to-end fixtures: the operator as a real process, kubectl, namespaces."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tenantdb.devenv import operator_process


@dataclass
class Kubectl:
    """kubectl bound to the test cluster's kubeconfig and one namespace."""

    kubeconfig: Path
    namespace: str

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", stdin=manifest)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.run("get", kind, name, "-o", "json").stdout)  # type: ignore[no-any-return]

    def wait(self, target: str, condition: str, timeout: int = 90) -> None:
        self.run("wait", f"--for={condition}", target, f"--timeout={timeout}s")

    def secret_data(self, name: str) -> dict[str, str]:
        data = self.get("secret", name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def events(self, name: str) -> list[dict[str, Any]]:
        raw = self.run(
            "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        return json.loads(raw.stdout)["items"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def operator(
    kubeconfig: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[operator_process.OperatorProcess]:
    """`tenantdb run` as a separate process for the whole session."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = operator_process.OperatorProcess(kubeconfig, database_url, log)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def kubectl(kubeconfig: Path, operator: operator_process.OperatorProcess) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace; the namespace is deleted afterwards."""
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    client = Kubectl(kubeconfig, namespace)
    client.run("create", "namespace", namespace)
    yield client
    client.run("delete", "namespace", namespace, "--wait=false", check=False)
