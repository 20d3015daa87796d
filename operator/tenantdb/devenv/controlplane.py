"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

Owns: finding (or building) the binaries through ``hack/control-plane.sh``,
the flags each process runs with (modelled on controller-runtime's envtest,
plus a controller-manager so that garbage collection and namespace deletion
really happen), readiness checks, the admin kubeconfig, and stopping
everything again. In node mode it serves a real node (``devenv.node``) and
the pods on it: see ``ControlPlane``. Must not import kopf, the Kubernetes client or another
tenantdb layer: readiness checks speak HTTP through the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
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

NODE_MODE_HOST = "127.0.100.1"
NODE_MODE_PORT = 443
"""Where the API server listens in node mode: the address the ``kubernetes``
Service gets as the first of ``NODE_MODE_SERVICE_RANGE``, and its port, so a
pod's stock in-cluster configuration reaches the API server directly."""
NODE_MODE_SERVICE_RANGE = "127.0.100.0/24"
"""A service range on loopback: no traffic of the node ever leaves 127.0.0.0/8."""
NODE_MODE_LOCK = Path.home() / ".cache" / "tenantdb" / "node-mode-control-plane.lock"
"""Held while a node-mode control plane runs: 127.0.100.1:443 fits only one."""
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
"""Who the API server is to kubelets (logs, exec, port-forward)."""


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
        node_mode: bool = False,
    ) -> None:
        self.work_dir = work_dir.absolute()
        self.bin_dir = bin_dir
        self.node_mode = node_mode
        """Serve a real node: the API server on ``NODE_MODE_HOST:NODE_MODE_PORT``
        (one at a time on this machine, under ``NODE_MODE_LOCK``) with Node
        authorization and NodeRestriction, and every controller of the
        controller-manager, so Deployments, ReplicaSets and Jobs make pods."""
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
        self._etcd_url: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._lock: int | None = None
        self.startup_seconds: float | None = None
        """How long the last ``start()`` took, binaries lookup excluded."""

    @property
    def server_url(self) -> str:
        """The API server's address; known once ``start()`` picked its port."""
        if self._api_port is None:
            raise processes.DevEnvError("the control plane is not running")
        return f"https://{self._api_host}:{self._api_port}"

    @property
    def _api_host(self) -> str:
        return NODE_MODE_HOST if self.node_mode else processes.LOOPBACK

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
            if self.node_mode:
                self._lock = _take_node_mode_lock(self.work_dir)
            self._prepare()
            self._etcd_url = self._start_etcd(bin_dir)
            self._start_api_server(bin_dir, self._etcd_url)
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
        self._etcd_url = None
        self._tls = None
        if self._lock is not None:
            os.close(self._lock)  # closing releases the lock
            self._lock = None
        if failures:
            raise failures[0]

    def restart_api_server(self) -> None:
        """Stop kube-apiserver and start it again on the same port, etcd and PKI, as an
        upgrade or a crash of the control plane would; return once it is ready again.

        Clients keep their kubeconfig; watches break and must be re-established."""
        (old,) = [child for child in self._children if child.name == "kube-apiserver"]
        if self._etcd_url is None:
            raise processes.DevEnvError("the control plane is not running")
        processes.terminate(old, self.stop_timeout)
        place = self._children.index(old)
        self._children.remove(old)
        bin_dir = self.bin_dir if self.bin_dir is not None else find_binaries()
        self._start_api_server(bin_dir, self._etcd_url)
        self._children.insert(place, self._children.pop())  # stop() keeps its order

    def _prepare(self) -> None:
        """Stop leftovers of a crashed run, then write the PKI and the kubeconfig."""
        marker = f"{self.work_dir}{os.sep}"  # every process has a path below work_dir
        for name in reversed(BINARIES):
            processes.reap_leftover(self._run_dir / f"{name}.pid", marker, self.stop_timeout)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        serving_ips: tuple[str, ...] = certificates.SERVING_IPS
        if self.node_mode:
            serving_ips = (*serving_ips, NODE_MODE_HOST)
        certificates.write_certificates(self.pki.directory, serving_ips=serving_ips)
        if self.node_mode:
            certificates.issue_client_certificate(
                self.pki, KUBELET_CLIENT_USER, certificates.ADMIN_GROUP, "kubelet-client"
            )
        self._api_port = NODE_MODE_PORT if self.node_mode else processes.free_port()
        processes.write_private_file(self.kubeconfig, self._kubeconfig_document())
        self._tls = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self._tls.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))

    def _kubeconfig_document(self) -> bytes:
        """The admin kubeconfig."""
        return kubeconfig_document(
            self.server_url,
            self.pki.ca_cert,
            certificates.ADMIN_USER,
            self.pki.admin_cert,
            self.pki.admin_key,
        )

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
            status, body = http_get(processes.LOOPBACK, client_port, "/health", None)
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
            f"--bind-address={self._api_host}",
            "--allow-privileged=true",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-account-issuer={self.server_url}",
            f"--service-account-key-file={self.pki.service_account_public_key}",
            f"--service-account-signing-key-file={self.pki.service_account_key}",
            *(self._node_mode_api_flags() if self.node_mode else self._api_flags()),
        )
        self._await(child, "ready on /readyz", lambda: self._api_get("/readyz") == 200)
        self._await(
            child,
            "serving namespace default",
            lambda: self._api_get("/api/v1/namespaces/default") == 200,
        )

    @staticmethod
    def _api_flags() -> tuple[str, ...]:
        return (
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
        )

    def _node_mode_api_flags(self) -> tuple[str, ...]:
        """A node's kubelet is authorized as a node, and may only touch its own objects."""
        return (
            f"--advertise-address={NODE_MODE_HOST}",
            f"--service-cluster-ip-range={NODE_MODE_SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={self.pki.directory / 'kubelet-client.crt'}",
            f"--kubelet-client-key={self.pki.directory / 'kubelet-client.key'}",
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
            *self._controller_flags(),
        )

        def healthy() -> bool:
            return http_get(processes.LOOPBACK, port, "/healthz", self._tls)[0] == 200

        self._await(child, "healthy on /healthz", healthy)

    def _controller_flags(self) -> tuple[str, ...]:
        """``CONTROLLERS``, or in node mode all of them (with a CA to sign node CSRs)."""
        if not self.node_mode:
            return (f"--controllers={','.join(CONTROLLERS)}",)
        return (
            "--controllers=*",
            f"--cluster-signing-cert-file={self.pki.ca_cert}",
            f"--cluster-signing-key-file={self.pki.ca_key}",
        )

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
        return self.api_get(path)[0]

    def api_get(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` from the running API server as ``admin``; status and body."""
        if self._api_port is None:
            raise processes.DevEnvError("the control plane is not running")
        return http_get(self._api_host, self._api_port, path, self._tls)


def _take_node_mode_lock(work_dir: Path) -> int:
    """Hold ``NODE_MODE_LOCK`` (its descriptor), or fail naming who holds it.

    A second node-mode control plane could only fail later, binding the same
    address, or worse, talk to the first one's API server: fail at once.
    """
    NODE_MODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(NODE_MODE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = NODE_MODE_LOCK.read_text().strip() or "another process"
        os.close(descriptor)
        raise processes.DevEnvError(
            f"a node-mode control plane already serves {NODE_MODE_HOST}:{NODE_MODE_PORT} "
            f"({holder}; lock {NODE_MODE_LOCK}): only one can run on this machine at a time"
        ) from None
    with contextlib.suppress(OSError):
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()}, work dir {work_dir}\n".encode())
    return descriptor


def kubeconfig_document(
    server_url: str, ca_cert: Path, user: str, client_cert: Path, client_key: Path
) -> bytes:
    """A kubeconfig with every credential inline, so it holds no paths.

    JSON is valid YAML, and kubectl, client-go and the Python client all
    read it; the standard library writes it.
    """

    def inline(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server_url, "certificate-authority-data": inline(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": inline(client_cert),
                    "client-key-data": inline(client_key),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
    }
    return json.dumps(document, indent=2).encode() + b"\n"


def http_get(host: str, port: int, path: str, tls: ssl.SSLContext | None) -> tuple[int, bytes]:
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
