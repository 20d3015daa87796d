"""DatabaseServers for tests: a second real PostgreSQL server, declared as the platform
admin declares one (a Secret in the operator's namespace, then the object)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantdb.devenv import postgres
from tests.e2e.kubectl import Kubectl

OWN_NAMESPACE = "default"
"""Where the session operator (no ``POD_NAMESPACE``) reads DatabaseServer Secrets."""


@pytest.fixture(scope="module")
def second_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[postgres.EmbeddedPostgres]:
    """A PostgreSQL server of the test module's own, beside the session's."""
    with postgres.EmbeddedPostgres(tmp_path_factory.mktemp("second-postgres")) as server:
        yield server


@contextlib.contextmanager
def declared(
    kubeconfig: Path, value: str, labels: dict[str, str] | None = None, ready: bool = True
) -> Iterator[str]:
    """A DatabaseServer whose Secret holds ``value`` (its URL), Ready unless ``ready`` is
    false; deleted afterwards with its Secret."""
    system = Kubectl(kubeconfig, OWN_NAMESPACE)
    name = f"server-{uuid.uuid4().hex[:6]}"
    system.run("create", "secret", "generic", name, f"--from-literal=DATABASE_URL={value}")
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "DatabaseServer",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"connection": {"secretName": name}},
    }
    system.apply(json.dumps(body))
    try:
        if ready:
            system.wait(f"databaseserver/{name}", "condition=Ready", timeout=60)
        yield name
    finally:
        system.run("delete", "databaseserver", name, "--wait=false", check=False)
        system.run("delete", "secret", name, check=False)
