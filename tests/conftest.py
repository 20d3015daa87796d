"""Session fixtures: one real PostgreSQL server and one real control plane.

``DATABASE_URL`` and ``KUBECONFIG`` point the suites at existing servers;
otherwise the embedded ones start once per session (per xdist worker).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.core import commands, connecting, naming
from tenantdb.devenv import controlplane, operator_process, postgres, processes, stack

BRIEF_PLAN = {"connection_limit": 5, "statement_timeout": "2s"}
"""A plan of the test operator (TENANTDB_PLANS) whose statements the watchdog stops quickly."""


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL of a real PostgreSQL server."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with postgres.EmbeddedPostgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server.url


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An admin kubeconfig of a real API server, with tenantdb's CRDs installed."""
    if os.environ.get("KUBECONFIG") and os.environ.get("TENANTDB_USE_KUBECONFIG") == "1":
        path = Path(os.environ["KUBECONFIG"])
        stack.install_crds(path)
        yield path
        return
    with controlplane.ControlPlane(tmp_path_factory.mktemp("k8s")) as plane:
        stack.install_crds(plane.kubeconfig)
        yield plane.kubeconfig


@pytest.fixture
def admin(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit superuser connection for catalog checks."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[commands.Server]:
    """The database server as core sees it, prepared (control and shared schema)."""
    pool = connecting.open_pool(database_url, 1, 8, name="tenantdb-tests")
    prepared = commands.Server(
        pool=pool,
        url=database_url,
        control_schema=naming.identifier("tenantdb"),
        shared_schema=naming.identifier("tenantdb_shared"),
    )
    commands.prepare(prepared)
    yield prepared
    pool.close()


@pytest.fixture(scope="session")
def operator(
    kubeconfig: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[operator_process.OperatorProcess]:
    """`tenantdb run` as a separate process for the whole session.

    The ``brief`` plan's short statement_timeout and the watchdog's short
    graces let the plan tests wait seconds, not minutes, for the watchdog.
    """
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    settings = {
        "TENANTDB_VERIFY_INTERVAL": "5",
        "TENANTDB_METRICS_PORT": str(processes.free_port()),
        "TENANTDB_PLANS": json.dumps({"brief": BRIEF_PLAN}),
        "TENANTDB_WATCHDOG_INTERVAL": "1",
        "TENANTDB_WATCHDOG_GRACE": "1",
        "TENANTDB_WATCHDOG_TERMINATE_GRACE": "2",
    }
    process = operator_process.OperatorProcess(kubeconfig, database_url, log, extra_env=settings)
    process.start()
    yield process
    process.stop()
