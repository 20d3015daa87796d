"""Hostile tenant names never reach PostgreSQL: the API server refuses them.

Names become schema, role and database names; the CRD admits only
lowercase DNS labels of at most 40 characters not starting with ``pg-``,
and the operator derives identifiers with a UID hash, so quoting tricks,
truncation collisions and reserved prefixes are impossible by construction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.core import commands, errors, naming
from tests.e2e.kubectl import Kubectl

pytestmark = pytest.mark.kube

K8S_NAME_ERROR = "a lowercase RFC 1123 subdomain"
OUR_NAME_ERROR = "tenant names must"

HOSTILE = {
    "double quote": ('acme"; DROP SCHEMA public; --', K8S_NAME_ERROR),
    "semicolon": ("acme;drop", K8S_NAME_ERROR),
    "dollar quoting": ("acme$$x", K8S_NAME_ERROR),
    "uppercase": ("Acme", K8S_NAME_ERROR),
    "unicode": ("ácme", K8S_NAME_ERROR),
    "pg prefix": ("pg-catalog", OUR_NAME_ERROR),
    "dot": ("acme.corp", OUR_NAME_ERROR),
    "collides after truncation (1)": ("a" * 62 + "b", OUR_NAME_ERROR),
    "collides after truncation (2)": ("a" * 62 + "c", OUR_NAME_ERROR),
}


@pytest.fixture(scope="module")
def namespace(kubeconfig: Path) -> Iterator[Kubectl]:
    kubectl = Kubectl(kubeconfig, f"hostile-names-{uuid.uuid4().hex[:8]}")
    kubectl.run("create", "namespace", kubectl.namespace)
    yield kubectl
    kubectl.run("delete", "namespace", kubectl.namespace, "--wait=false", check=False)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_name_is_refused_by_the_api_server(
    namespace: Kubectl, server: commands.Server, admin: psycopg.Connection, case: str
) -> None:
    name, expected = HOSTILE[case]
    manifest = (
        f"apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: '{name}'\nspec: {{}}\n"
    )
    result = namespace.run("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    registered = admin.execute("SELECT count(*) FROM tenantdb.tenants WHERE name = %s", (name,))
    assert registered.fetchone() == (0,)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_name_is_refused_by_the_operator_too(case: str) -> None:
    """Defence in depth: core refuses what the CRD refuses, before any SQL."""
    with pytest.raises(errors.InvalidName):
        naming.tenant_names(HOSTILE[case][0], "uid")
