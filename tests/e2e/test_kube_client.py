"""The operator's own API client (controllers/kube.py) against the real API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantdb.api import GROUP, VERSION
from tenantdb.controllers import kube, requeue
from tests.e2e.kubectl import Kubectl

pytestmark = pytest.mark.kube


@pytest.fixture
def logged_in(
    api_only: Kubectl, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Kubectl]:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    kube.login()
    yield api_only
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # whatever a test pointed it at
    kube.login()


def test_a_token_refused_once_logs_in_again(
    logged_in: Kubectl, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotated credential: the API server answers 401, the client reads its
    credentials again and the call goes through."""
    admin = json.loads(kubeconfig.read_text())
    stale = json.loads(kubeconfig.read_text())
    stale["users"][0]["user"] = {"token": "not-a-token"}
    config = tmp_path / "config"
    config.write_text(json.dumps(stale))
    monkeypatch.setenv("KUBECONFIG", str(config))
    kube.login()
    config.write_text(json.dumps(admin))
    assert kube.list_custom_objects(GROUP, VERSION, logged_in.namespace, "tenants") == []


def test_a_credential_that_stays_refused_is_an_api_error(
    logged_in: Kubectl, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = json.loads(kubeconfig.read_text())
    stale["users"][0]["user"] = {"token": "not-a-token"}
    config = tmp_path / "config"
    config.write_text(json.dumps(stale))
    monkeypatch.setenv("KUBECONFIG", str(config))
    kube.login()
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
    logged_in: Kubectl,
) -> None:
    namespace = logged_in.namespace
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Migration",
        "metadata": {"name": "m1", "labels": {"team": "a"}},
        "spec": {"version": 1, "up": "CREATE TABLE t (id int)"},
    }
    made = kube.create_custom_object(GROUP, VERSION, namespace, "migrations", body)
    assert made is not None and made["metadata"]["name"] == "m1"
    assert kube.create_custom_object(GROUP, VERSION, namespace, "migrations", body) is None
    labelled = kube.list_labelled_objects(GROUP, VERSION, namespace, "migrations", "team=a")
    assert [o["metadata"]["name"] for o in labelled] == ["m1"]
    assert kube.list_labelled_objects(GROUP, VERSION, namespace, "migrations", "team=b") == []
    version = made["metadata"]["resourceVersion"]
    status = {"phase": "Running"}
    assert kube.patch_custom_status_at(
        GROUP, VERSION, namespace, "migrations", "m1", status, version
    )
    assert not kube.patch_custom_status_at(
        GROUP, VERSION, namespace, "migrations", "m1", status, version
    )  # moved on since
    found = kube.read_custom_object(GROUP, VERSION, namespace, "migrations", "m1")
    assert found is not None and found["status"]["phase"] == "Running"
    everywhere = kube.list_every_custom_object(GROUP, VERSION, "migrations", None)
    assert "m1" in {o["metadata"]["name"] for o in everywhere}
    kube.delete_custom_object(GROUP, VERSION, namespace, "migrations", "m1")
    kube.delete_custom_object(GROUP, VERSION, namespace, "migrations", "m1")  # gone is fine
    assert kube.read_custom_object(GROUP, VERSION, namespace, "migrations", "m1") is None
    with pytest.raises(kube.ApiError) as caught:
        kube.patch_custom_status(GROUP, VERSION, namespace, "migrations", "m1", status)
    assert (caught.value.status, caught.value.reason) == (404, "NotFound")
    assert "m1" in caught.value.message


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
    requeue._wake(ref)
    woken = kube.read_custom_object(GROUP, VERSION, namespace, "tenants", "waiting")
    assert woken is not None and woken["status"]["operator"][requeue.REQUEUE]
    kube.delete_custom_object(GROUP, VERSION, namespace, "tenants", "waiting")
    again = kube.create_custom_object(GROUP, VERSION, namespace, "tenants", body)
    assert again is not None and again["metadata"]["uid"] != ref.uid
    with pytest.raises(kube.ApiError) as caught:
        requeue._wake(ref)
    assert caught.value.status == 404
    untouched = kube.read_custom_object(GROUP, VERSION, namespace, "tenants", "waiting")
    assert untouched is not None and "status" not in untouched
