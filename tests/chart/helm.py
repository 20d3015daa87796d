"""The real Helm binary against the chart: find (or build) it, lint, render.

``hack/helm.sh`` owns the build and its cache; this module only asks it
where the binary is, the way ``devenv.controlplane`` asks its own script.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tenantdb"
SCRIPT = ROOT / "hack" / "helm.sh"

REQUIRED = {"database.existingSecret": "tenantdb-database"}
"""The one value without a default: the Secret with the operator's database URL."""


def find_binary() -> Path:
    """The Helm binary: the cached one, else built now (minutes, once)."""
    for action in ("path", "build"):
        completed = subprocess.run(
            ["bash", str(SCRIPT), action],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode == 0 and completed.stdout.strip():
            return Path(completed.stdout.strip().splitlines()[-1])
    raise RuntimeError(f"hack/helm.sh build failed: {completed.stderr[-4000:]}")


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(self.binary), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {completed.stderr}")
        return completed

    def template(
        self,
        values: dict[str, Any] | None = None,
        *,
        namespace: str = "tenantdb-system",
        release: str = "tenantdb",
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``helm template`` with ``values`` as ``--set-json`` pairs over REQUIRED."""
        merged: dict[str, Any] = {**REQUIRED, **(values or {})}
        pairs = [arg for key, value in merged.items() for arg in ("--set-json", _pair(key, value))]
        return self.run(
            "template", release, str(CHART), "--namespace", namespace, *pairs, check=check
        )

    def manifests(self, values: dict[str, Any] | None = None, **kwargs: Any) -> list[Manifest]:
        """Every object ``helm template`` renders (the CRDs of crds/ not included)."""
        rendered = self.template(values, **kwargs).stdout
        return [Manifest(doc) for doc in yaml.safe_load_all(rendered) if doc]


def _pair(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


class Manifest(dict[str, Any]):
    """One rendered object, with the fields tests look at most."""

    @property
    def kind(self) -> str:
        return str(self["kind"])

    @property
    def name(self) -> str:
        return str(self["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self["metadata"].get("namespace")
        return None if namespace is None else str(namespace)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m.name for m in found]}"
    return found[0]


def container(manifests: list[Manifest]) -> dict[str, Any]:
    """The operator container of the Deployment."""
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]  # type: ignore[no-any-return]


def env(manifests: list[Manifest]) -> dict[str, Any]:
    """The operator's environment: a value, or the ``valueFrom`` source."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(manifests)["env"]}


def set_required() -> str:
    """REQUIRED as one ``--set`` argument."""
    return ",".join(f"{key}={value}" for key, value in REQUIRED.items())
