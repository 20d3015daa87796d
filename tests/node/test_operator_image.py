"""The operator's image on a real node: its pg_dump is of the server's major version.

How the image runs the operator (non-root, read-only root, the projected token, the
chart's RBAC) is tested where the chart installs it, ``test_chart_install.py``."""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.kubectl import Kubectl
from tests.node import manifests
from tests.node.fixtures import NodeCluster

pytestmark = [pytest.mark.node, pytest.mark.kube, pytest.mark.postgres]


def test_pg_dump_in_the_image_is_of_the_server_major_version(
    node_namespace: Kubectl, node_cluster: NodeCluster, database_url: str
) -> None:
    image = node_cluster.image.name
    node_namespace.apply(manifests.command_pod("pg-dump", image, ["pg_dump", "--version"]))
    node_namespace.wait("pod/pg-dump", "jsonpath={.status.phase}=Succeeded", timeout=120)
    version = node_namespace.run("logs", "pg-dump").stdout.strip()
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    assert version.startswith("pg_dump (PostgreSQL) ")
    assert int(version.split()[-1].split(".")[0]) == row[0] // 10000
