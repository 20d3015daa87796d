"""The operator's own API client (controllers/kube.py) against the real API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantdb.api import GROUP, VERSION
from tenantdb.controllers import kube, requeue
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually

pytestmark = pytest.mark.kube


PROBES = "probes"
PROBE_GROUP, PROBE_VERSION = "kube-client.tenantdb.test", "v1"
PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PROBES}.{PROBE_GROUP}"},
    "spec": {
        "group": PROBE_GROUP,
        "scope": "Namespaced",
        "names": {"plural": PROBES, "singular": "probe", "kind": "Probe"},
        "versions": [
            {
                "name": PROBE_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
"""A kind of the test's own: no operator touches its objects while the calls are judged."""


@pytest.fixture(scope="module")
def probes(kubeconfig: Path) -> Iterator[None]:
    admin = Kubectl(kubeconfig, "default")
    admin.apply(json.dumps(PROBE_CRD))
    admin.wait(f"crd/{PROBES}.{PROBE_GROUP}", "condition=Established")
    yield
    admin.run("delete", "crd", f"{PROBES}.{PROBE_GROUP}", "--wait=false")


@pytest.fixture
def logged_in(
    api_only: Kubectl, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Kubectl]:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    kube.login()
    yield api_only
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # whatever a test pointed it at
    kube.login()


def _logged_in_with_a_bad_token(
    kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The client logged in from a copy of the kubeconfig whose user has a token the API
    server refuses; the copy's path."""
    stale = json.loads(kubeconfig.read_text())
    stale["users"][0]["user"] = {"token": "not-a-token"}
    config = tmp_path / "config"
    config.write_text(json.dumps(stale))
    monkeypatch.setenv("KUBECONFIG", str(config))
    kube.login()
    return config


def test_a_token_refused_once_logs_in_again(
    logged_in: Kubectl, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotated credential: the API server answers 401, the client reads its
    credentials again and the call goes through."""
    config = _logged_in_with_a_bad_token(kubeconfig, tmp_path, monkeypatch)
    config.write_text(kubeconfig.read_text())
    assert kube.list_custom_objects(GROUP, VERSION, logged_in.namespace, "tenants") == []


def test_a_credential_that_stays_refused_is_an_api_error(
    logged_in: Kubectl, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _logged_in_with_a_bad_token(kubeconfig, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError) as caught:
        kube.list_custom_objects(GROUP, VERSION, logged_in.namespace, "tenants")
    assert (caught.value.status, caught.value.reason) == (401, "Unauthorized")
    assert "not-a-token" not in str(caught.value)


def test_secrets_are_created_once_and_patched_only_at_their_version(logged_in: Kubectl) -> None:
    namespace = logged_in.namespace
    body = {"metadata": {"name": "creds"}, "stringData": {"password": "first"}}
    version = kube.create_secret_once(namespace, body)
    assert version is not None
    assert kube.create_secret_once(namespace, body) is None  # there already
    assert kube.create_secret(namespace, body) is False
    secret = kube.read_secret(namespace, "creds")
    assert secret is not None and secret["data"] == {"password": "first"}
    changed = {"metadata": {"name": "creds"}, "stringData": {"password": "second"}}
    newer = kube.patch_secret_at(namespace, changed, version)
    assert newer is not None and newer != version
    assert kube.patch_secret_at(namespace, changed, version) is None  # stale version
    again = kube.read_secret(namespace, "creds")
    assert again is not None and again["data"] == {"password": "second"}
    assert kube.read_secret(namespace, "absent") is None


def test_custom_objects_round_trip_and_errors_carry_the_servers_reason(
    logged_in: Kubectl, probes: None
) -> None:
    namespace, kind = logged_in.namespace, (PROBE_GROUP, PROBE_VERSION)
    body = {
        "apiVersion": f"{PROBE_GROUP}/{PROBE_VERSION}",
        "kind": "Probe",
        "metadata": {"name": "p1", "labels": {"team": "a"}},
        "spec": {"size": 1},
    }
    made = kube.create_custom_object(*kind, namespace, PROBES, body)
    assert made is not None and made["metadata"]["name"] == "p1"
    assert kube.create_custom_object(*kind, namespace, PROBES, body) is None
    labelled = kube.list_labelled_objects(*kind, namespace, PROBES, "team=a")
    assert [o["metadata"]["name"] for o in labelled] == ["p1"]
    assert kube.list_labelled_objects(*kind, namespace, PROBES, "team=b") == []
    version = made["metadata"]["resourceVersion"]
    status = {"phase": "Running"}
    assert kube.patch_custom_status_at(*kind, namespace, PROBES, "p1", status, version)
    assert not kube.patch_custom_status_at(*kind, namespace, PROBES, "p1", status, version)
    found = kube.read_custom_object(*kind, namespace, PROBES, "p1")
    assert found is not None and found["status"] == status
    kube.create_custom_object(*kind, namespace, PROBES, body | {"metadata": {"name": "p2"}})
    everywhere = kube.list_pages(*kind, PROBES, None, page=1)  # two answers, one continue
    assert {"p1", "p2"} <= {o["metadata"]["name"] for o in everywhere}
    kube.delete_custom_object(*kind, namespace, PROBES, "p2")
    kube.delete_custom_object(*kind, namespace, PROBES, "p1")
    kube.delete_custom_object(*kind, namespace, PROBES, "p1")  # gone is fine
    assert kube.read_custom_object(*kind, namespace, PROBES, "p1") is None
    with pytest.raises(kube.ApiError) as caught:
        kube.patch_custom_status(*kind, namespace, PROBES, "p1", status)
    assert (caught.value.status, caught.value.reason) == (404, "NotFound")
    assert "p1" in caught.value.message


def test_events_are_posted_about_an_object(logged_in: Kubectl) -> None:
    namespace = logged_in.namespace
    involved = {"apiVersion": "v1", "kind": "Namespace", "namespace": namespace, "name": namespace}
    kube.post_event(involved, "Warning", "Tested", "x" * 5000)
    events = json.loads(logged_in.run("get", "events", "-o", "json").stdout)["items"]
    assert [(e["reason"], len(e["message"])) for e in events] == [
        ("Tested", kube.EVENT_MESSAGE_LIMIT)
    ]


def test_a_wake_up_reaches_the_tenant_that_waited_and_no_other(logged_in: Kubectl) -> None:
    """``requeue``'s write: the new value lands where kopf compares; a Tenant deleted
    and made again under the name is not woken (as if it were gone)."""
    namespace = logged_in.namespace
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "metadata": {"name": "waiting"},
        "spec": {"isolation": "schema"},
    }
    first = kube.create_custom_object(GROUP, VERSION, namespace, "tenants", body)
    assert first is not None
    ref = requeue.Ref(namespace, "tenants", "waiting", first["metadata"]["uid"])
    eventually(lambda: _woke(ref))
    woken = kube.read_custom_object(GROUP, VERSION, namespace, "tenants", "waiting")
    assert woken is not None and woken["status"]["operator"][requeue.REQUEUE]
    kube.delete_custom_object(GROUP, VERSION, namespace, "tenants", "waiting")
    eventually(  # an operator may hold it a moment with its finalizer
        lambda: kube.read_custom_object(GROUP, VERSION, namespace, "tenants", "waiting") is None
    )
    again = kube.create_custom_object(GROUP, VERSION, namespace, "tenants", body)
    assert again is not None and again["metadata"]["uid"] != ref.uid
    with pytest.raises(kube.ApiError) as caught:
        requeue._wake(ref)
    assert caught.value.status == 404
    untouched = kube.read_custom_object(GROUP, VERSION, namespace, "tenants", "waiting")
    assert untouched is not None
    assert requeue.REQUEUE not in (untouched.get("status") or {}).get("operator", {})


def _woke(ref: requeue.Ref) -> bool:
    """One wake-up; False when the object moved between its read and its write (409),
    as it does while an operator reconciles it."""
    try:
        requeue._wake(ref)
    except kube.ApiError as exc:
        if exc.status == 409:
            return False
        raise
    return True
