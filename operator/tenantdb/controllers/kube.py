"""The one module that imports the Kubernetes client.

Everything else asks this module for typed, minimal operations, so that the
client library could be swapped without touching handlers. Every operation
fails with ``ApiError`` only: an API server that cannot be reached (restarted,
a broken connection) is ``ApiError`` 503, retryable like any server trouble,
not the HTTP library's own exception, which callers would not expect.
"""

import base64
import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, cast

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reachable(call: Callable[_P, _R]) -> Callable[_P, _R]:
    """An unreachable API server as ``ApiError`` 503."""

    @functools.wraps(call)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return call(*args, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise ApiException(status=503, reason=f"API server unreachable: {exc}") from exc

    return wrapped


def login() -> None:
    """Use the in-cluster service account, else the kubeconfig (``KUBECONFIG`` as it is
    now: the client reads it once, when it is first imported)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None
        )
    _client.cache_clear()


@functools.cache
def _client() -> Any:
    """One ApiClient per process: its connection pool keeps TLS connections open,
    where a new client per call would handshake with the API server every time."""
    return kubernetes.client.ApiClient()


def core() -> Any:
    """A CoreV1Api on the logged-in configuration."""
    return kubernetes.client.CoreV1Api(_client())


@_reachable
def read_secret(namespace: str, name: str) -> dict[str, Any] | None:
    """A Secret as a plain dict with decoded ``data``, or ``None`` if absent."""
    try:
        secret = core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    raw = cast(dict[str, Any], _client().sanitize_for_serialization(secret))
    raw["data"] = {k: base64.b64decode(v).decode() for k, v in (raw.get("data") or {}).items()}
    return raw


@_reachable
def create_secret_once(namespace: str, body: dict[str, Any]) -> str | None:
    """Create a Secret; its ``resourceVersion``, or ``None`` if one of that name exists."""
    try:
        made = core().create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise
    return str(made.metadata.resource_version)


@_reachable
def patch_secret_at(namespace: str, body: dict[str, Any], resource_version: str) -> str | None:
    """Patch a Secret only if it is still at ``resource_version`` (optimistic concurrency);
    its new ``resourceVersion``, or ``None`` if someone changed it in between."""
    versioned = {**body, "metadata": {**body["metadata"], "resourceVersion": resource_version}}
    try:
        patched = core().patch_namespaced_secret(body["metadata"]["name"], namespace, versioned)
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise
    return str(patched.metadata.resource_version)


def is_conflict_or_unavailable(exc: BaseException) -> bool:
    """Whether an API error is worth retrying (conflict, throttling, server trouble)."""
    return isinstance(exc, ApiException) and (exc.status in (409, 429) or exc.status >= 500)


ApiError = ApiException

EVENT_MESSAGE_LIMIT = 1024
"""Characters of an event message the API server is sure to keep."""


@_reachable
def post_event(involved: dict[str, str], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event about an object, from outside any kopf handler.

    ``involved`` is the object reference (apiVersion, kind, namespace, name,
    uid). kopf's own ``kopf.warn`` only works inside its handlers; background
    work (the statement watchdog) posts through this instead.
    """
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": involved,
        "type": type_,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "source": {"component": "tenantdb"},
        "reportingComponent": "tenantdb",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    core().create_namespaced_event(involved["namespace"], body)


# --- Custom objects, for the Migration controller (controllers/migrations.py) ---


@_reachable
def list_custom_objects(group: str, version: str, namespace: str, plural: str) -> list[Any]:
    """Every object of one custom kind in a namespace, as plain dicts."""
    api = kubernetes.client.CustomObjectsApi(_client())
    listed = api.list_namespaced_custom_object(group, version, namespace, plural)
    return list(cast(dict[str, Any], listed).get("items") or [])


@_reachable
def patch_custom_status(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    status: dict[str, Any],
    resource_version: str | None = None,
) -> None:
    """Merge-patch the status subresource of one custom object; with ``resource_version``,
    only if the object is still at it (409 otherwise)."""
    body: dict[str, Any] = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    _custom().patch_namespaced_custom_object_status(group, version, namespace, plural, name, body)


def _custom() -> Any:
    return kubernetes.client.CustomObjectsApi(_client())


@_reachable
def read_custom_object(
    group: str, version: str, namespace: str, plural: str, name: str
) -> dict[str, Any] | None:
    """One custom object as a plain dict, or ``None`` if absent."""
    try:
        found = _custom().get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], found)


@_reachable
def create_custom_object(
    group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    """Create a custom object; ``None`` if one of that name exists already."""
    try:
        made = _custom().create_namespaced_custom_object(group, version, namespace, plural, body)
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise
    return cast(dict[str, Any], made)


@_reachable
def delete_custom_object(group: str, version: str, namespace: str, plural: str, name: str) -> None:
    """Delete a custom object (absent already is fine)."""
    try:
        _custom().delete_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@_reachable
def list_labelled_objects(
    group: str, version: str, namespace: str, plural: str, selector: str
) -> list[dict[str, Any]]:
    """The custom objects of a namespace matching a label selector."""
    listed = _custom().list_namespaced_custom_object(
        group, version, namespace, plural, label_selector=selector
    )
    return list(cast(dict[str, Any], listed).get("items") or [])


@_reachable
def create_secret(namespace: str, body: dict[str, Any]) -> bool:
    """Create a Secret; ``False`` if one of that name exists already (it is left alone)."""
    try:
        core().create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


@_reachable
def list_every_custom_object(
    group: str, version: str, plural: str, namespace: str | None
) -> list[dict[str, Any]]:
    """Every object of one custom kind, in one namespace or all of them (one list call)."""
    if namespace:
        return [dict(o) for o in list_custom_objects(group, version, namespace, plural)]
    listed = _custom().list_cluster_custom_object(group, version, plural)
    return list(cast(dict[str, Any], listed).get("items") or [])


@_reachable
def patch_custom_status_at(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    status: dict[str, Any],
    resource_version: str,
) -> bool:
    """Merge-patch the status only if the object is still at ``resource_version``;
    ``False`` (nothing written) if it changed meanwhile or is gone."""
    try:
        patch_custom_status(group, version, namespace, plural, name, status, resource_version)
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


@_reachable
def read_peering(
    group: str, version: str, name: str, namespace: str | None
) -> dict[str, Any] | None:
    """kopf's peering object: the ``KopfPeering`` of a namespace, or the cluster's
    ``ClusterKopfPeering`` (``namespace`` None); ``None`` if absent. Listed by name, not
    read: the verbs kopf needs on it (list, watch, patch) are all the chart grants."""
    selector = f"metadata.name={name}"
    if namespace is None:
        listed = _custom().list_cluster_custom_object(
            group, version, "clusterkopfpeerings", field_selector=selector
        )
    else:
        listed = _custom().list_namespaced_custom_object(
            group, version, namespace, "kopfpeerings", field_selector=selector
        )
    items = list(cast(dict[str, Any], listed).get("items") or [])
    return cast(dict[str, Any], items[0]) if items else None
