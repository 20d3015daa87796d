"""Credentials from a kubeconfig and from a pod's service account, as kubectl reads them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tenantdb.controllers import kubelogin


def kubeconfig(
    path: Path, user: dict[str, object], cluster: dict[str, object] | None = None
) -> Path:
    config = {
        "current-context": "dev",
        "contexts": [
            {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}
        ],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_paths_in_a_kubeconfig_are_relative_to_its_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text("s3cret\n")
    cluster = {"server": "https://10.0.0.1", "certificate-authority": "pki/ca.crt"}
    path = kubeconfig(tmp_path / "conf" / "config", {"tokenFile": "token"}, cluster)
    info = kubelogin.from_kubeconfig([path])
    assert info.server == "https://10.0.0.1"
    assert info.ca_path == str(tmp_path / "conf" / "pki" / "ca.crt")
    assert info.token == "s3cret"
    assert info.default_namespace == "shop"


def test_the_first_file_that_names_an_entry_wins(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "first"})
    second = kubeconfig(tmp_path / "b", {"token": "second"})
    assert kubelogin.from_kubeconfig([first, second]).token == "first"


def test_an_exec_plugin_gives_the_token_and_its_expiry(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os, sys\n"
        "asked = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert asked['kind'] == 'ExecCredential' and os.environ['REGION'] == sys.argv[1]\n"
        "assert 'cluster' not in asked['spec']  # not asked for\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': 'issued',"
        " 'expirationTimestamp': '2030-01-02T03:04:05Z'}}))\n"
    )
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(plugin), "eu-1"],
        "env": [{"name": "REGION", "value": "eu-1"}],
    }
    info = kubelogin.from_kubeconfig([kubeconfig(tmp_path / "config", {"exec": spec})])
    assert info.token == "issued"
    assert info.expiration is not None and info.expiration.year == 2030


def test_an_exec_plugin_that_asks_gets_the_cluster(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os\n"
        "cluster = json.loads(os.environ['KUBERNETES_EXEC_INFO'])['spec']['cluster']\n"
        "token = '|'.join([cluster['server'], cluster['certificate-authority-data'],"
        " cluster['config']['audience']])\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': token}}))\n"
    )
    spec = {"command": sys.executable, "args": [str(plugin)], "provideClusterInfo": True}
    cluster = {
        "server": "https://10.0.0.1",
        "certificate-authority": "ca.crt",
        "extensions": [
            {"name": kubelogin.EXEC_EXTENSION, "extension": {"audience": "shop-cluster"}}
        ],
    }
    info = kubelogin.from_kubeconfig([kubeconfig(tmp_path / "config", {"exec": spec}, cluster)])
    assert info.token == "https://10.0.0.1|UEVN|shop-cluster"  # base64 of the CA file


def test_a_failing_exec_plugin_is_a_login_error_with_its_words(tmp_path: Path) -> None:
    spec = {
        "command": sys.executable,
        "args": ["-c", "import sys; sys.exit('no session, run sso login')"],
    }
    path = kubeconfig(tmp_path / "config", {"exec": spec})
    with pytest.raises(kubelogin.LoginError, match="run sso login"):
        kubelogin.from_kubeconfig([path])


def test_a_kubeconfig_without_a_current_context_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps({"clusters": [], "users": [], "contexts": []}))
    with pytest.raises(kubelogin.LoginError, match="no current context"):
        kubelogin.from_kubeconfig([path])


def test_in_a_pod_the_service_address_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("pod-token\n")
    (tmp_path / "namespace").write_text("tenantdb-system")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = kubelogin.in_cluster(tmp_path)
    assert info.server == "https://[fd00::1]:443"
    assert (info.token, info.default_namespace) == ("pod-token", "tenantdb-system")
    assert info.ca_path == str(tmp_path / "ca.crt")


def test_no_credentials_anywhere_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kubelogin.LoginError, match="missing"):
        kubelogin.credentials()
