"""kubectl bound to the test cluster: the tests drive Kubernetes as users do."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
        result = self.run(
            "wait", f"--for={condition}", target, f"--timeout={timeout}s", check=False
        )
        if result.returncode != 0:
            state = self.run("get", target, "-o", "jsonpath={.status}", check=False).stdout
            raise AssertionError(f"{target} never reached {condition}: status {state}")

    def secret_data(self, name: str) -> dict[str, str]:
        data = self.get("secret", name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def events(self, name: str) -> list[dict[str, Any]]:
        raw = self.run(
            "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        return json.loads(raw.stdout)["items"]  # type: ignore[no-any-return]
