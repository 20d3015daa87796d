"""Where the operator's credentials for the API server come from: one answer for kopf's
session (``apiserver.login``) and for the operator's own calls (``kube``).

In a pod: the service account, at the address the kubelet puts in the environment
(``KUBERNETES_SERVICE_HOST``/``_PORT``, so no cluster DNS is needed), with the token
file read again at every login (the kubelet rotates it; a 401 logs in again).
Elsewhere: the kubeconfig (``KUBECONFIG``, else ``~/.kube/config``), its current
context, with a client certificate, a token, a username and password, or an ``exec``
credential plugin (the cloud providers' ``aws eks get-token``, ``gke-gcloud-auth-plugin``,
``kubelogin``); file paths in it are relative to the file, as kubectl reads them.

No Kubernetes client library: kopf already parses credentials into its
``ConnectionInfo``, which builds the TLS context and the ``Authorization`` header.
"""

import base64
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_TIMEOUT = 60.0
"""Seconds an exec credential plugin may take (it may open a browser for a person)."""
EXEC_EXTENSION = "client.authentication.k8s.io/exec"
"""The cluster extension passed to a plugin as ``spec.cluster.config``."""


class LoginError(Exception):
    """No credentials, or credentials that cannot be used."""


def credentials() -> kopf.ConnectionInfo:
    """The service account in a pod, else the kubeconfig."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT / "token").exists():
        return in_cluster(SERVICE_ACCOUNT)
    return from_kubeconfig(_kubeconfig_paths())


def in_cluster(account: Path) -> kopf.ConnectionInfo:
    """The pod's service account (its token file as it is now)."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    namespace = account / "namespace"
    return kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(account / "ca.crt"),
        token=(account / "token").read_text().strip(),
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
    )


def _kubeconfig_paths() -> list[Path]:
    listed = os.environ.get("KUBECONFIG") or ""
    paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    if not paths:
        paths = [Path("~/.kube/config").expanduser()]
    found = [p for p in paths if p.exists()]
    if not found:
        raise LoginError(
            "no credentials for the API server: not in a pod, and no kubeconfig "
            f"({', '.join(map(str, paths))})"
        )
    return found


def from_kubeconfig(paths: list[Path]) -> kopf.ConnectionInfo:
    """The current context of the merged kubeconfig files (the first of a name wins)."""
    current: str | None = None
    entries: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = {
        "contexts": {},
        "clusters": {},
        "users": {},
    }
    for path in paths:
        config = yaml.safe_load(path.read_text()) or {}
        current = current or config.get("current-context")
        for kind, named in entries.items():
            for item in config.get(kind) or []:
                body = item.get(kind[:-1]) or {}
                named.setdefault(item["name"], (path.parent, body))
    if not current or current not in entries["contexts"]:
        raise LoginError(f"the kubeconfig has no current context ({current or 'none set'})")
    _, context = entries["contexts"][current]
    base, cluster = entries["clusters"].get(context.get("cluster", ""), (Path("."), {}))
    user_base, user = entries["users"].get(context.get("user", ""), (Path("."), {}))
    if not cluster.get("server"):
        raise LoginError(f"context {current} names no cluster with a server")
    issued = _exec_plugin(user["exec"], user_base, cluster, base) if user.get("exec") else {}
    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=_relative(base, cluster.get("certificate-authority")),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=_relative(user_base, user.get("client-certificate")),
        certificate_data=issued.get("clientCertificateData") or user.get("client-certificate-data"),
        private_key_path=_relative(user_base, user.get("client-key")),
        private_key_data=issued.get("clientKeyData") or user.get("client-key-data"),
        username=user.get("username"),
        password=user.get("password"),
        token=issued.get("token") or _token(user, user_base),
        default_namespace=context.get("namespace"),
        proxy_url=cluster.get("proxy-url"),
        expiration=_expiration(issued.get("expirationTimestamp")),
    )


def _relative(base: Path, path: str | None) -> str | None:
    return None if not path else str(base / Path(path).expanduser())


def _token(user: dict[str, Any], base: Path) -> str | None:
    if user.get("token"):
        return str(user["token"])
    if user.get("tokenFile"):
        return (base / str(user["tokenFile"])).read_text().strip()
    return None


def _exec_plugin(
    spec: dict[str, Any], base: Path, cluster: dict[str, Any], cluster_base: Path
) -> dict[str, Any]:
    """Run the kubeconfig's credential plugin; its ExecCredential's ``status``."""
    command = str(spec["command"])
    if "/" in command and not os.path.isabs(command):
        command = str(base / command)  # relative to the kubeconfig, as kubectl runs it
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    request = {
        "apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    if spec.get("provideClusterInfo"):
        request["spec"]["cluster"] = _cluster_info(cluster, cluster_base)
    env["KUBERNETES_EXEC_INFO"] = json.dumps(request)
    try:
        done = subprocess.run(
            [command, *map(str, spec.get("args") or [])],
            env=env,
            capture_output=True,
            timeout=EXEC_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoginError(f"credential plugin {command} could not run: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()[-500:]
        raise LoginError(f"credential plugin {command} exited {done.returncode}: {said}")
    try:
        status = json.loads(done.stdout)["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LoginError(f"credential plugin {command} gave no ExecCredential status") from exc
    return dict(status)  # PEM data as plugins give it: kopf takes PEM or base64


def _cluster_info(cluster: dict[str, Any], base: Path) -> dict[str, Any]:
    """The cluster as an exec plugin that asks for it (``provideClusterInfo``) reads it:
    the CA as base64 data even when the kubeconfig names a file, and the exec extension."""
    info: dict[str, Any] = {"server": cluster["server"]}
    ca_data = cluster.get("certificate-authority-data")
    ca_file = _relative(base, cluster.get("certificate-authority"))
    if not ca_data and ca_file:
        ca_data = base64.b64encode(Path(ca_file).read_bytes()).decode()
    for key, value in (
        ("certificate-authority-data", ca_data),
        ("tls-server-name", cluster.get("tls-server-name")),
        ("insecure-skip-tls-verify", cluster.get("insecure-skip-tls-verify")),
        ("proxy-url", cluster.get("proxy-url")),
    ):
        if value:
            info[key] = value
    for extension in cluster.get("extensions") or []:
        if extension.get("name") == EXEC_EXTENSION:
            info["config"] = extension.get("extension")
    return info


def _expiration(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
