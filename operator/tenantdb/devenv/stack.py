"""`tenantdb dev up` / `dev down`: PostgreSQL, a control plane, an S3 server and the operator.

Defaults are embedded (a PostgreSQL server from the wheel, a control plane
and an S3 server built from Go modules); ``DATABASE_URL`` and
``KUBECONFIG`` swap in existing ones. The state directory (``.dev/``) holds data, logs, the
kubeconfig, a pid file for ``dev down`` and ``env``, a shell-sourceable
file for the next terminal.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from tenantdb.api import crds
from tenantdb.devenv import controlplane, objectstore, operator_process, postgres, processes

PIDS_FILE = "pids"
ENV_FILE = "env"
CREDENTIALS_KEY_FILE = "credentials-key"
BACKUP_BUCKET = "tenantdb-backups"
"""The bucket ``dev up`` creates on its S3 server for backups."""


def install_crds(kubeconfig: Path) -> None:
    """Apply every CRD the chart brings (tenantdb's and kopf's peering kinds) and wait
    until they are served."""
    documents = crds.files()
    manifest = "---\n".join(documents.values())
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    names = [f"crd/{yaml.safe_load(text)['metadata']['name']}" for text in documents.values()]
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", *names)


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """Run kubectl against ``kubeconfig``; raise with its stderr on failure."""
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise processes.DevEnvError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def up(state: Path, detach: bool = False, apply: Sequence[Path] = ()) -> int:
    """Start everything, print what to type next, and wait for Ctrl-C.

    With ``detach`` the servers keep running after we return; ``down``
    stops them. On any failure, what was started is stopped again.
    """
    state.mkdir(parents=True, exist_ok=True)
    started: list[Callable[[], None]] = []
    try:
        url = _start_database(state, started)
        kubeconfig = _start_cluster(state, started)
        s3 = _start_object_store(state, started)
        install_crds(kubeconfig)
        key = _credentials_key(state)
        operator = operator_process.OperatorProcess(
            kubeconfig,
            url,
            state / "logs" / "operator.log",
            extra_env={
                "TENANTDB_CREDENTIALS_KEY": key,
                "TENANTDB_BACKUP_STORAGE": os.environ.get("TENANTDB_BACKUP_STORAGE")
                or f"file://{(state / 'backups').resolve()}",
            },
        )
        operator.start()
        started.append(operator.stop)
        _write_env(state, kubeconfig, url, key, s3)
        for manifest in apply:
            print(kubectl(kubeconfig, "apply", "-f", str(manifest)).strip())
        _print_next_steps(state)
        if detach:
            _record_pids(state)
            started.clear()
            return 0
        _wait_for_interrupt()
        print("\nstopping ...", flush=True)
    finally:
        for stop in reversed(started):
            stop()
    return 0


def _start_database(state: Path, started: list[Callable[[], None]]) -> str:
    """``DATABASE_URL`` if set, else an embedded server's (non-superuser) operator role."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    print("starting PostgreSQL ...", flush=True)
    server = postgres.EmbeddedPostgres(state / "postgres")
    server.start()
    started.append(server.stop)
    return server.operator_url


def _start_cluster(state: Path, started: list[Callable[[], None]]) -> Path:
    """``KUBECONFIG`` if set, else a local control plane."""
    if os.environ.get("KUBECONFIG"):
        return Path(os.environ["KUBECONFIG"])
    print("starting the Kubernetes control plane (the first run builds it) ...", flush=True)
    plane = controlplane.ControlPlane(state / "k8s")
    plane.start()
    started.append(plane.stop)
    return plane.kubeconfig


def _start_object_store(state: Path, started: list[Callable[[], None]]) -> objectstore.Endpoint:
    """An S3 server over ``state/s3`` with the backup bucket in it."""
    print("starting the S3 server (the first run builds it) ...", flush=True)
    store = objectstore.ObjectStore(state / "s3")
    store.start()
    started.append(store.stop)
    store.create_bucket(BACKUP_BUCKET, exist_ok=True)
    return store.endpoint


def down(state: Path) -> int:
    """Stop what a detached ``up`` left running."""
    pids_file = state / PIDS_FILE
    if not pids_file.exists():
        print("nothing is running")
        return 0
    for line in reversed(pids_file.read_text().split()):
        with contextlib.suppress(ValueError):
            processes.terminate_pid(int(line), timeout=20)
    postgres.EmbeddedPostgres(state / "postgres").stop()
    pids_file.unlink()
    return 0


def _credentials_key(state: Path) -> str:
    """The operator's credentials key (``TENANTDB_CREDENTIALS_KEY`` if set), kept in the
    state directory so the CLI and later runs derive the same owner passwords."""
    if os.environ.get("TENANTDB_CREDENTIALS_KEY"):
        return os.environ["TENANTDB_CREDENTIALS_KEY"]
    path = state / CREDENTIALS_KEY_FILE
    if not path.exists():
        processes.write_private_file(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


def _write_env(state: Path, kubeconfig: Path, url: str, key: str, s3: objectstore.Endpoint) -> None:
    """What the next terminal sources; the S3 server under the AWS tools' own names."""
    text = (
        f"export KUBECONFIG={kubeconfig}\nexport DATABASE_URL='{url}'\n"
        f"export TENANTDB_CREDENTIALS_KEY='{key}'\n"
        f"export AWS_ENDPOINT_URL='{s3.url}'\nexport AWS_REGION='{s3.region}'\n"
        f"export AWS_ACCESS_KEY_ID='{s3.access_key_id}'\n"
        f"export AWS_SECRET_ACCESS_KEY='{s3.secret_access_key}'\n"
    )
    processes.write_private_file(state / ENV_FILE, text.encode())


def _print_next_steps(state: Path) -> None:
    print(
        "\ntenantdb is running. In another terminal:\n"
        f"  source {state / ENV_FILE}\n"
        "  kubectl get tenants,migrations,backups\n"
        "  kubectl wait --for=condition=Ready tenant/acme\n"
        f"Backups bucket: {BACKUP_BUCKET} on $AWS_ENDPOINT_URL (path-style)\n"
        f"Operator log: {state / 'logs' / 'operator.log'}\n",
        flush=True,
    )


def _record_pids(state: Path) -> None:
    """Our children's pids (etcd, API server, controller-manager, S3 server, operator),
    for ``down``."""
    children = subprocess.run(
        ["pgrep", "-P", str(os.getpid())], capture_output=True, text=True, check=False
    ).stdout.split()
    (state / PIDS_FILE).write_text("\n".join(children) + "\n")


def _wait_for_interrupt() -> None:
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        pass
    sys.stdout.flush()
