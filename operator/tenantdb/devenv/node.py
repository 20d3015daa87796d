"""A real single Kubernetes node beside a node-mode control plane: pods actually run.

Owns: finding (or building) kubelet, kube-scheduler, crictl and the pause
binary through ``hack/node.sh``; containerd with its own root, state, socket
and config under the node's work dir; the kubelet (node ``127.0.0.1``,
client certificate ``system:node:127.0.0.1``) and the scheduler; importing
OCI image archives; and a teardown that leaves the machine as it was: every
process stopped by PID, every mount under the work dir unmounted, the
kubelet's cgroups removed, the sysctls it changes restored, and the
directories it writes outside its root removed again.

Only ``hostNetwork: true`` pods work here: the CNI configuration is loopback
only, so no traffic ever leaves 127.0.0.0/8. Must not import kopf, the
Kubernetes client or another tenantdb layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tenantdb.devenv import certificates, controlplane, oci, processes

NODE_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "node.sh"
"""Builds the binaries once (and installs containerd, runc, the CNI plugins)."""

BINARIES = ("kubelet", "kube-scheduler", "crictl", "pause")
NODE_NAME = "127.0.0.1"
"""``--hostname-override``: the node's name and InternalIP (``--node-ip`` refuses loopback)."""
PAUSE_IMAGE = "localhost/tenantdb-pause:1"
RUNC = Path("/usr/sbin/runc")
CNI_PLUGINS = Path("/usr/lib/cni")
CONTAINERD_NAMESPACE = "k8s.io"
"""Where the CRI plugin looks for images, so archives are imported there."""

KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
"""What the kubelet sets when it starts; restored when the node stops."""
OUTSIDE_PATHS = (
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)
"""Written whatever the root directories say (the kubelet's device plugins and log
links, CNI results, containerd's shim sockets); removed again if the node made them."""
CGROUPS = ("kubepods", "k8s.io")
"""The kubelet's and containerd's cgroups, in every hierarchy under ``CGROUP_ROOT``."""
CGROUP_ROOT = Path("/sys/fs/cgroup")
_MNT_DETACH = 2


def find_binaries(build: bool = True) -> Path:
    """The directory holding kubelet, kube-scheduler, crictl and pause (built if allowed)."""
    directory = _ask_script("path")
    if directory is None and build:
        directory = _ask_script("build")
    if directory is None:
        hint = "failed (see its output above)" if build else "has not built them yet"
        raise processes.DevEnvError(f"no node binaries: hack/node.sh {hint}")
    return directory


def _ask_script(action: str) -> Path | None:
    completed = subprocess.run(
        ["bash", str(NODE_SCRIPT), action],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if action == "path" else None,
        text=True,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    return Path(lines[-1]) if completed.returncode == 0 and lines else None


class Node(processes.Service):
    """containerd, the kubelet and kube-scheduler serving one node-mode control plane.

    ``start()`` returns once the node is Ready; ``import_archive()`` then
    loads images for ``imagePullPolicy: Never`` pods; ``stop()`` tears it all
    down (idempotent). Needs root, like any kubelet.
    """

    def __init__(
        self,
        work_dir: Path,
        plane: controlplane.ControlPlane,
        bin_dir: Path | None = None,
        *,
        startup_timeout: float = 120.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.work_dir = work_dir.absolute()
        self.plane = plane
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.logs_dir = self.work_dir / "logs"
        self.socket = self.work_dir / "containerd" / "containerd.sock"
        self._children: list[processes.Child] = []
        self._bin_dir: Path | None = None
        self._saved_sysctls: dict[str, str] = {}
        self._made: list[Path] = []
        self.startup_seconds: float | None = None
        """How long the last ``start()`` took, binaries lookup excluded."""

    @property
    def pids(self) -> dict[str, int]:
        """The running daemons by name (tests check they are gone after stop)."""
        return {child.name: child.pid for child in self._children}

    def start(self) -> None:
        """Start containerd, the kubelet and the scheduler; return once the node is Ready."""
        if self._children:
            raise processes.DevEnvError("the node is already running")
        if not self.plane.node_mode:
            raise processes.DevEnvError("a node needs a control plane started with node_mode=True")
        if os.geteuid() != 0:
            raise processes.DevEnvError("a kubelet needs root (mounts, cgroups, sysctls)")
        self._bin_dir = self.bin_dir if self.bin_dir is not None else find_binaries()
        began = time.monotonic()
        try:
            self._remember_machine_state()
            self._start_containerd()
            pause = self.work_dir / "pause.oci.tar"
            oci.write_binary_image(self._bin_dir / "pause", PAUSE_IMAGE, pause)
            self.import_archive(pause)
            self._start_kubelet()
            self._start_scheduler()
            self._await_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def import_archive(self, archive: Path) -> None:
        """Import an OCI image archive into containerd's ``k8s.io`` namespace."""
        argv = ["ctr", "--address", str(self.socket), "-n", CONTAINERD_NAMESPACE]
        argv += ["images", "import", str(archive)]
        processes.run_logged("ctr", argv, self.logs_dir / "ctr.log", timeout=300)

    def crictl(self, *arguments: str, timeout: float = 60.0) -> str:
        """Run crictl against this node's containerd; its standard output."""
        assert self._bin_dir is not None, "start() finds the binaries first"
        completed = subprocess.run(
            [
                str(self._bin_dir / "crictl"),
                "--runtime-endpoint",
                f"unix://{self.socket}",
                *arguments,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if completed.returncode != 0:
            raise processes.DevEnvError(f"crictl {' '.join(arguments)}: {completed.stderr}")
        return completed.stdout

    def stop(self) -> None:
        """Stop everything and undo what the node changed on the machine; idempotent."""
        failures: list[BaseException] = []
        for step in (
            self._stop_kubernetes_daemons,
            self._remove_pods,
            self._stop_containerd,
            self._kill_leftovers,
            self._unmount,
            self._remove_cgroups,
            self._restore_machine_state,
        ):
            try:
                step()
            except (OSError, processes.DevEnvError, subprocess.SubprocessError) as exc:
                failures.append(exc)
        if failures:
            raise processes.DevEnvError(f"node teardown: {failures[0]}") from failures[0]

    # --- start ---

    def _remember_machine_state(self) -> None:
        """Save the sysctls the kubelet changes and note which outside paths it will make."""
        self._saved_sysctls = {name: _sysctl(name) for name in KUBELET_SYSCTLS}
        self._made = [path for path in OUTSIDE_PATHS if not path.exists()]
        processes.write_private_file(
            self.work_dir / "machine-state.json",
            json.dumps(
                {"sysctls": self._saved_sysctls, "made": [str(p) for p in self._made]}
            ).encode(),
        )

    def _start_containerd(self) -> None:
        """containerd on its own socket, its CRI plugin set up for this machine."""
        config = self.work_dir / "containerd" / "config.toml"
        cni_dir = self.work_dir / "cni"
        cni_dir.mkdir(parents=True, exist_ok=True)
        (cni_dir / "10-loopback.conflist").write_text(
            json.dumps(
                {"cniVersion": "0.4.0", "name": "loopback-only", "plugins": [{"type": "loopback"}]}
            )
        )
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config(cni_dir))
        child = self._spawn("containerd", "containerd", "--config", str(config))

        def serving() -> bool:
            argv = ["ctr", "--address", str(self.socket), "version"]
            return (
                subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0
            )

        self._await(child, "serving its socket", serving)

    def _containerd_config(self, cni_dir: Path) -> str:
        """The containerd 1.6 configuration (TOML; every value is a quoted string or bool).

        ``restrict_oom_score_adj``: runc cannot lower oom_score_adj without
        CAP_SYS_RESOURCE, which this kind of machine's bounding set lacks.
        """
        root = self.work_dir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        disabled = [
            "io.containerd.internal.v1.opt",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.tracing.processor.v1.otlp",
        ]
        return "\n".join(
            [
                "version = 2",
                f'root = "{root / "root"}"',
                f'state = "{root / "state"}"',
                f"disabled_plugins = {json.dumps(disabled)}",
                "[grpc]",
                f'  address = "{self.socket}"',
                "[ttrpc]",
                f'  address = "{root / "ttrpc.sock"}"',
                f"[{cri}]",
                f'  sandbox_image = "{PAUSE_IMAGE}"',
                "  restrict_oom_score_adj = true",
                '  stream_server_address = "127.0.0.1"',
                f'  stream_server_port = "{processes.free_port()}"',
                "  enable_selinux = false",
                f"[{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                '  default_runtime_name = "runc"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.containerd.runtimes.runc.options]",
                f'  BinaryName = "{RUNC}"',
                f'  Root = "{root / "runc"}"',
                "  SystemdCgroup = false",
                f"[{cri}.cni]",
                f'  bin_dir = "{CNI_PLUGINS}"',
                f'  conf_dir = "{cni_dir}"',
                "",
            ]
        )

    def _start_kubelet(self) -> None:
        """The kubelet as node ``127.0.0.1``, with the cgroupfs driver, on free ports."""
        directory = self.work_dir / "kubelet"
        cert, key = certificates.issue_client_certificate(
            self.plane.pki, f"system:node:{NODE_NAME}", "system:nodes", "node"
        )
        kubeconfig = directory / "kubeconfig"
        processes.write_private_file(
            kubeconfig,
            controlplane.kubeconfig_document(
                self.plane.server_url, self.plane.pki.ca_cert, f"system:node:{NODE_NAME}", cert, key
            ),
        )
        healthz_port = processes.free_port()
        config = directory / "config.json"
        config.write_text(json.dumps(self._kubelet_config(healthz_port), indent=2))
        child = self._spawn(
            "kubelet",
            "kubelet",
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={directory / 'root'}",
            f"--cert-dir={directory / 'pki'}",
            f"--hostname-override={NODE_NAME}",
        )

        def healthy() -> bool:
            return controlplane.http_get(NODE_NAME, healthz_port, "/healthz", None)[0] == 200

        self._await(child, "healthy on /healthz", healthy)

    def _kubelet_config(self, healthz_port: int) -> dict[str, object]:
        """KubeletConfiguration for a loopback node on a cgroup v1 machine with swap."""
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_NAME,
            "port": processes.free_port(),
            "healthzBindAddress": NODE_NAME,
            "healthzPort": healthz_port,
            "readOnlyPort": 0,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "oomScoreAdj": 0,
            "podLogsDir": str(self.work_dir / "pod-logs"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            # The disk is shared with other work: evict only when it is really full.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerNode": True,
        }

    def _start_scheduler(self) -> None:
        """kube-scheduler with the admin kubeconfig, serving health over our TLS cert."""
        port = processes.free_port()
        kubeconfig = str(self.plane.kubeconfig)
        pki = self.plane.pki
        child = self._spawn(
            "kube-scheduler",
            "kube-scheduler",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            "--authentication-skip-lookup=true",
            f"--client-ca-file={pki.ca_cert}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--secure-port={port}",
            f"--bind-address={processes.LOOPBACK}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            "--leader-elect=false",
        )
        tls = ssl.create_default_context(cafile=str(pki.ca_cert))
        tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))

        def healthy() -> bool:
            return controlplane.http_get(processes.LOOPBACK, port, "/healthz", tls)[0] == 200

        self._await(child, "healthy on /healthz", healthy)

    def _await_ready(self) -> None:
        """Wait for the Node object to report Ready=True (the kubelet registers it)."""

        def ready() -> bool:
            status, body = self.plane.api_get(f"/api/v1/nodes/{NODE_NAME}")
            if status != 200:
                return False
            conditions = json.loads(body).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        kubelet = next(child for child in self._children if child.name == "kubelet")
        self._await(kubelet, f"node {NODE_NAME} Ready", ready)

    def _spawn(self, name: str, binary: str, *arguments: str) -> processes.Child:
        """Start a daemon (ours from the bin dir, else from PATH) with its log in ``logs/``."""
        assert self._bin_dir is not None
        executable = self._bin_dir / binary
        program = str(executable) if executable.is_file() else binary
        child = processes.spawn(name, [program, *arguments], self.logs_dir / f"{name}.log")
        self._children.append(child)
        processes.write_pid_file(self.work_dir / "run" / f"{name}.pid", child.pid)
        return child

    def _await(self, child: processes.Child, condition: str, ready: Callable[[], bool]) -> None:
        processes.wait_until(
            ready,
            component=child.name,
            condition=condition,
            timeout=self.startup_timeout,
            log_path=child.log_path,
            process=child.process,
        )

    # --- stop ---

    def _stop_daemon(self, name: str) -> None:
        for child in [c for c in self._children if c.name == name]:
            processes.terminate(child, self.stop_timeout)
            self._children.remove(child)
            (self.work_dir / "run" / f"{name}.pid").unlink(missing_ok=True)

    def _stop_kubernetes_daemons(self) -> None:
        """Scheduler and kubelet first, so nothing restarts the pods removed next."""
        self._stop_daemon("kube-scheduler")
        self._stop_daemon("kubelet")

    def _remove_pods(self) -> None:
        """Stop and remove every pod sandbox (and so its containers and shim)."""
        if not any(c.name == "containerd" for c in self._children) or self._bin_dir is None:
            return
        self.crictl("rmp", "--all", "--force", timeout=120)

    def _stop_containerd(self) -> None:
        self._stop_daemon("containerd")

    def _kill_leftovers(self) -> None:
        """Shims of our containerd and processes left in the node's cgroups, by PID."""
        marker = str(self.work_dir)
        pids = {pid for pid in _all_pids() if any(marker in a for a in _arguments(pid))}
        pids |= {pid for directory in _node_cgroups() for pid in _cgroup_pids(directory)}
        pids.discard(os.getpid())
        for pid in pids:
            processes.terminate_pid(pid, self.stop_timeout)

    def _unmount(self) -> None:
        """Unmount everything below the work dir (projected volumes, rootfs overlays, shm)."""
        prefix = f"{self.work_dir}{os.sep}"
        for mount_point in sorted(_mount_points(prefix), key=len, reverse=True):
            if _umount(mount_point) != 0:
                raise processes.DevEnvError(f"cannot unmount {mount_point}")

    def _remove_cgroups(self) -> None:
        """Remove the kubelet's and containerd's cgroups, deepest first."""
        deadline = time.monotonic() + self.stop_timeout
        for directory in _node_cgroups():
            for path, _, _ in sorted(os.walk(directory), key=lambda e: len(e[0]), reverse=True):
                while True:
                    try:
                        os.rmdir(path)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() >= deadline:
                            raise
                        time.sleep(0.05)

    def _restore_machine_state(self) -> None:
        """Put back the sysctls and remove the outside directories the node made."""
        for name, value in self._saved_sysctls.items():
            if _sysctl(name) != value:
                (Path("/proc/sys") / name).write_text(value)
        self._saved_sysctls = {}
        for path in self._made:
            shutil.rmtree(path, ignore_errors=True)
        self._made = []


def _sysctl(name: str) -> str:
    return (Path("/proc/sys") / name).read_text().strip()


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _arguments(pid: int) -> list[str]:
    return processes.command_line(pid) or []


def _node_cgroups() -> list[Path]:
    """Every existing ``CGROUPS`` directory, in every mounted hierarchy."""
    if not CGROUP_ROOT.is_dir():
        return []
    hierarchies = [CGROUP_ROOT, *(p for p in CGROUP_ROOT.iterdir() if p.is_dir())]
    found = [h / name for h in hierarchies for name in CGROUPS]
    return [path for path in found if (path / "cgroup.procs").is_file()]


def _cgroup_pids(directory: Path) -> set[int]:
    pids: set[int] = set()
    for path, _, files in os.walk(directory):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (Path(path) / "cgroup.procs").read_text().split()}
    return pids


def _mount_points(prefix: str) -> list[str]:
    """Mount points starting with ``prefix``, from /proc/self/mountinfo (octal escapes decoded)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            found.append(point)
    return found


def _umount(path: str) -> int:
    """umount2(path, MNT_DETACH): 0, or -1 (a mount already gone counts as done)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), _MNT_DETACH) == 0:
        return 0
    return 0 if ctypes.get_errno() in (2, 22) else -1  # ENOENT, EINVAL: not mounted
