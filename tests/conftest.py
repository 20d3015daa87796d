"""Session fixtures: one real PostgreSQL server, one real control plane, one S3 server.

``DATABASE_URL`` and ``KUBECONFIG`` point the suites at existing servers;
otherwise the embedded ones start once per session (per xdist worker).
The operator (in process and as a process) runs as the embedded server's
non-superuser ``tenantdb_operator``; ``database_url`` is the superuser, for
set-up and catalog checks only. ``TENANTDB_OPERATOR_URL`` names the
operator's role on an existing server (default: ``DATABASE_URL``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.core import commands
from tenantdb.devenv import (
    controlplane,
    objectstore,
    operator_process,
    postgres,
    processes,
    stack,
)
from tests.servers import database_settings

pytest_plugins = ("tests.node.fixtures", "tests.e2e.databaseservers")


def pytest_configure(config: pytest.Config) -> None:
    """One credentials key for the operator, the CLI and in-process servers of this run."""
    os.environ.setdefault("TENANTDB_CREDENTIALS_KEY", secrets.token_urlsafe(32))


OPERATOR_LOG_LINES = 60
"""How much of the operator's log a failed test's report carries."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used the operator process shows the end of its log: what the
    operator did around the failure is what a CI report needs and cannot rerun."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    process = funcargs.get("operator")
    if report.failed and call.when == "call" and process is not None:
        lines = process.log_path.read_text(errors="replace").splitlines()
        report.sections.append(
            ("operator log (last lines)", "\n".join(lines[-OPERATOR_LOG_LINES:]))
        )
    return report


BRIEF_PLAN = {"connection_limit": 5, "statement_timeout": "2s"}
"""A plan of the test operator (TENANTDB_PLANS) whose statements the watchdog stops quickly."""


@pytest.fixture(scope="session")
def embedded_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[postgres.EmbeddedPostgres | None]:
    """The embedded server, or None when ``DATABASE_URL`` names one."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    with postgres.EmbeddedPostgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def database_url(embedded_postgres: postgres.EmbeddedPostgres | None) -> str:
    """A superuser URL of the operator's database on a real PostgreSQL server."""
    if embedded_postgres is None:
        return os.environ["DATABASE_URL"]
    return embedded_postgres.superuser_url()


@pytest.fixture(scope="session")
def operator_url(embedded_postgres: postgres.EmbeddedPostgres | None) -> str:
    """The URL the operator runs with: a role without superuser."""
    if embedded_postgres is None:
        return os.environ.get("TENANTDB_OPERATOR_URL") or os.environ["DATABASE_URL"]
    return embedded_postgres.operator_url


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
def server(operator_url: str) -> Iterator[commands.Server]:
    """The database server as core sees it, prepared (control and shared schema)."""
    prepared = commands.open_server(database_settings(operator_url), "tenantdb-tests", 8)
    commands.prepare(prepared)
    yield prepared
    prepared.close()


@pytest.fixture(scope="session")
def backup_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session operator's default backup storage (a directory)."""
    return tmp_path_factory.mktemp("backups")


@pytest.fixture(scope="session")
def operator(
    kubeconfig: Path,
    operator_url: str,
    backup_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[operator_process.OperatorProcess]:
    """`tenantdb run` as a separate process for the whole session.

    The ``brief`` plan's short statement_timeout and the watchdog's short
    graces let the plan tests wait seconds, not minutes, for the watchdog.
    """
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    settings = {
        "TENANTDB_VERIFY_INTERVAL": "5",
        "TENANTDB_MAX_STATEMENT_TIMEOUT": "1h",
        "TENANTDB_METRICS_PORT": str(processes.free_port()),
        "TENANTDB_PLANS": json.dumps({"brief": BRIEF_PLAN}),
        "TENANTDB_WATCHDOG_INTERVAL": "1",
        "TENANTDB_WATCHDOG_GRACE": "1",
        "TENANTDB_WATCHDOG_TERMINATE_GRACE": "2",
        "TENANTDB_USAGE_INTERVAL": "2",
        "TENANTDB_BACKUP_STORAGE": f"file://{backup_root}",
    }
    process = operator_process.OperatorProcess(kubeconfig, operator_url, log, extra_env=settings)
    process.start()
    yield process
    process.stop()


class S3Server:
    """The session's S3 server as tests see it: endpoint, keys, fresh buckets."""

    def __init__(self, store: objectstore.ObjectStore) -> None:
        self._store = store
        self.endpoint = store.endpoint

    def new_bucket(self) -> str:
        """A bucket no other test uses (S3 names: lowercase, 3-63 characters)."""
        return self._store.create_bucket(f"test-{secrets.token_hex(6)}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (versitygw over a directory) for the session."""
    with objectstore.ObjectStore(tmp_path_factory.mktemp("s3")) as store:
        yield S3Server(store)
