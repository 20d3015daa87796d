"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

Owns: finding (or building) the binaries through ``hack/control-plane.sh``,
the flags each process runs with (modelled on controller-runtime's envtest,
plus a controller-manager so that garbage collection and namespace deletion
really happen), readiness checks, the admin kubeconfig, and stopping
everything again. Must not import kopf, the Kubernetes client or another
tenantdb layer: readiness checks speak HTTP through the standard library.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tenantdb.devenv import certificates, processes

CONTROL_PLANE_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "control-plane.sh"
"""Builds the binaries once and prints the directory they are cached in."""

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
REQUIRED_BINARIES = BINARIES[:2]
"""envtest's asset directories (KUBEBUILDER_ASSETS) have no controller-manager;
without it there is no garbage collection and namespaces stay Terminating."""

CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
"""What kube-controller-manager runs: ownerReference garbage collection,
namespace deletion, and the service-account machinery (default accounts,
token secrets, the ``kube-root-ca.crt`` ConfigMap every namespace gets).
Without a kubelet or a scheduler, no other controller has work to do."""

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
CLUSTER_NAME = "tenantdb-dev"


def find_binaries(build: bool = True) -> Path:
    """Return the directory holding etcd, kube-apiserver and kube-controller-manager.

    The script owns the cache layout and the build, so it is asked rather
    than second-guessed: ``path`` first, then (if allowed) ``build``, which
    compiles Kubernetes on first use and can take many minutes; its progress
    goes to our stderr.
    """
    if not CONTROL_PLANE_SCRIPT.is_file():
        raise processes.DevEnvError(
            f"{CONTROL_PLANE_SCRIPT} not found: the control plane needs a source checkout"
        )
    directory = _ask_script("path")
    if directory is None and build:
        directory = _ask_script("build")
    if directory is None:
        hint = "failed (see its output above)" if build else "has not built them yet"
        raise processes.DevEnvError(f"no control-plane binaries: hack/control-plane.sh {hint}")
    missing = [name for name in REQUIRED_BINARIES if not (directory / name).is_file()]
    if missing:
        raise processes.DevEnvError(f"{directory} lacks {', '.join(missing)}")
    return directory


def _ask_script(action: str) -> Path | None:
    """Run the script's ``path`` or ``build``; the directory it printed, or None."""
    completed = subprocess.run(
        ["bash", str(CONTROL_PLANE_SCRIPT), action],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if action == "path" else None,
        text=True,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        return None
    return Path(lines[-1])


class ControlPlane(processes.Service):
    """etcd, kube-apiserver and kube-controller-manager on loopback, in one work dir.

    ``start()`` writes the PKI and an admin kubeconfig under ``work_dir``,
    starts the three processes in dependency order and returns once the API
    server serves the ``default`` namespace and the controller-manager is
    healthy. ``stop()`` undoes it in reverse order. etcd's data stays in
    ``work_dir`` between runs; the PKI is made afresh on every start.
    """

    def __init__(
        self,
        work_dir: Path,
        bin_dir: Path | None = None,
        *,
        startup_timeout: float = 120.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.work_dir = work_dir.absolute()
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        """Seconds each process may take to become ready."""
        self.stop_timeout = stop_timeout
        """Seconds each process gets after SIGTERM before SIGKILL."""
        self.kubeconfig = self.work_dir / "kubeconfig"
        self.logs_dir = self.work_dir / "logs"
        self.pki = certificates.CertificateFiles(self.work_dir / "pki")
        self._run_dir = self.work_dir / "run"
        self._children: list[processes.Child] = []
        self._api_port: int | None = None
        self._tls: ssl.SSLContext | None = None
        self.startup_seconds: float | None = None
        """How long the last ``start()`` took, binaries lookup excluded."""

    @property
    def server_url(self) -> str:
        """The API server's address; known once ``start()`` picked its port."""
        if self._api_port is None:
            raise processes.DevEnvError("the control plane is not running")
        return f"https://{processes.LOOPBACK}:{self._api_port}"

    @property
    def pids(self) -> dict[str, int]:
        """The running processes by binary name (tests check they are gone after stop)."""
        return {child.name: child.pid for child in self._children}

    def start(self) -> None:
        """Start etcd, then the API server, then the controller-manager, each once ready.

        On any failure, whatever was started is stopped again and the error
        (with the tail of the failing process's log) propagates.
        """
        if self._children:
            raise processes.DevEnvError("the control plane is already running")
        bin_dir = self.bin_dir if self.bin_dir is not None else find_binaries()
        began = time.monotonic()
        try:
            self._prepare()
            etcd_url = self._start_etcd(bin_dir)
            self._start_api_server(bin_dir, etcd_url)
            if (bin_dir / "kube-controller-manager").is_file():
                self._start_controller_manager(bin_dir)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop controller-manager, API server and etcd, in that order; idempotent.

        Reverse start order, so nothing outlives what it depends on and
        nobody logs a storm of connection errors while shutting down.
        """
        failures: list[processes.DevEnvError] = []
        while self._children:
            child = self._children.pop()
            try:
                processes.terminate(child, self.stop_timeout)
            except processes.DevEnvError as exc:
                failures.append(exc)
            (self._run_dir / f"{child.name}.pid").unlink(missing_ok=True)
        self._api_port = None
        self._tls = None
        if failures:
            raise failures[0]

    def _prepare(self) -> None:
        """Stop leftovers of a crashed run, then write the PKI and the kubeconfig."""
        marker = f"{self.work_dir}{os.sep}"  # every process has a path below work_dir
        for name in reversed(BINARIES):
            processes.reap_leftover(self._run_dir / f"{name}.pid", marker, self.stop_timeout)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        certificates.write_certificates(self.pki.directory)
        self._api_port = processes.free_port()
        processes.write_private_file(self.kubeconfig, self._kubeconfig_document())
        self._tls = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self._tls.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))

    def _kubeconfig_document(self) -> bytes:
        """An admin kubeconfig with every credential inline, so it holds no paths.

        JSON is valid YAML, and kubectl, client-go and the Python client all
        read it; the standard library writes it.
        """

        def inline(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        user = certificates.ADMIN_USER
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority-data": inline(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": inline(self.pki.admin_cert),
                        "client-key-data": inline(self.pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}
            ],
            "current-context": CLUSTER_NAME,
        }
        return json.dumps(document, indent=2).encode() + b"\n"

    def _start_etcd(self, bin_dir: Path) -> str:
        """Start etcd on two free loopback ports; return its client URL once healthy."""
        client_port, peer_port = processes.free_port(), processes.free_port()
        client_url = f"http://{processes.LOOPBACK}:{client_port}"
        peer_url = f"http://{processes.LOOPBACK}:{peer_port}"
        child = self._spawn(
            bin_dir,
            "etcd",
            "--name=tenantdb-dev",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=tenantdb-dev={peer_url}",
            # Nothing here is worth an fsync: the data is thrown away or rebuilt.
            "--unsafe-no-fsync=true",
        )

        def healthy() -> bool:
            status, body = _get(processes.LOOPBACK, client_port, "/health", None)
            return status == 200 and json.loads(body).get("health") == "true"

        self._await(child, "healthy on /health", healthy)
        return client_url

    def _start_api_server(self, bin_dir: Path, etcd_url: str) -> None:
        """Start kube-apiserver; return once it is ready and ``default`` exists."""
        port = self._api_port
        child = self._spawn(
            bin_dir,
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={self.work_dir / 'apiserver'}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--secure-port={port}",
            f"--bind-address={processes.LOOPBACK}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-account-issuer={self.server_url}",
            f"--service-account-key-file={self.pki.service_account_public_key}",
            f"--service-account-signing-key-file={self.pki.service_account_key}",
        )
        self._await(child, "ready on /readyz", lambda: self._api_get("/readyz") == 200)
        self._await(
            child,
            "serving namespace default",
            lambda: self._api_get("/api/v1/namespaces/default") == 200,
        )

    def _start_controller_manager(self, bin_dir: Path) -> None:
        """Start kube-controller-manager with only ``CONTROLLERS``; return once healthy.

        It logs in with the admin kubeconfig and serves its health endpoint
        with our serving certificate, so the check can verify TLS properly.
        """
        port = processes.free_port()
        child = self._spawn(
            bin_dir,
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            # Our CA directly, rather than looked up in a ConfigMap that has no
            # request-header CA in this cluster (and logs an error every second).
            "--authentication-skip-lookup=true",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--root-ca-file={self.pki.ca_cert}",
            f"--service-account-private-key-file={self.pki.service_account_key}",
            f"--secure-port={port}",
            f"--bind-address={processes.LOOPBACK}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
        )

        def healthy() -> bool:
            return _get(processes.LOOPBACK, port, "/healthz", self._tls)[0] == 200

        self._await(child, "healthy on /healthz", healthy)

    def _spawn(self, bin_dir: Path, name: str, *arguments: str) -> processes.Child:
        """Start one binary with its log in ``logs/`` and its pid in ``run/``."""
        child = processes.spawn(
            name, [str(bin_dir / name), *arguments], self.logs_dir / f"{name}.log"
        )
        self._children.append(child)
        processes.write_pid_file(self._run_dir / f"{name}.pid", child.pid)
        return child

    def _await(self, child: processes.Child, condition: str, ready: Callable[[], bool]) -> None:
        """Wait for ``ready`` while watching ``child``; time out after ``startup_timeout``."""
        processes.wait_until(
            ready,
            component=child.name,
            condition=condition,
            timeout=self.startup_timeout,
            log_path=child.log_path,
            process=child.process,
        )

    def _api_get(self, path: str) -> int:
        """GET ``path`` from the API server as ``admin``; the HTTP status."""
        assert self._api_port is not None, "start() picks the port first"
        return _get(processes.LOOPBACK, self._api_port, path, self._tls)[0]


def _get(host: str, port: int, path: str, tls: ssl.SSLContext | None) -> tuple[int, bytes]:
    """One GET over plain HTTP or verified TLS; status and body.

    ``http.client`` rather than urllib: error statuses come back as values,
    and the connection is always closed, so no socket outlives the check.
    """
    connection: http.client.HTTPConnection
    if tls is None:
        connection = http.client.HTTPConnection(host, port, timeout=5)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=5, context=tls)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
