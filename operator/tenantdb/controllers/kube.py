"""The operator's own calls to the API server, outside kopf: plain JSON over one HTTP pool.

kopf watches and patches the objects it handles; this module is everything else
(credentials Secrets, events from background work, Migration, Backup and
peering objects read and written from handler threads). It is a small client
over urllib3 rather than the official Kubernetes client: that library's
generated models are 56 MB of a process that is some 135 MB idle, and kopf
imports it at start whenever it is installed, while the calls needed here are a
dozen REST paths. Credentials come from ``kubelogin``, as kopf's do; a 401 logs
in again once (a rotated service-account token).

Every operation fails with ``ApiError`` only: an API server that cannot be
reached (restarted, a broken connection) is ``ApiError`` 503, retryable like
any server trouble, not the HTTP library's own exception.
"""

import base64
import functools
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import kopf
import urllib3

from tenantdb.controllers import kubelogin

_P = ParamSpec("_P")
_R = TypeVar("_R")

TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
"""No call here waits on a watch: a minute without an answer is a broken connection."""
POOL_SIZE = 16
"""Connections kept open: the handler threads, the verification loop and a rollout's
status writes at once (more are opened when needed, and closed after)."""
MERGE_PATCH = "application/merge-patch+json"
PAGE = 500
"""Objects per answer of ``list_pages``: a list of every Tenant is read a page at a time,
so no more than a page of decoded bodies is alive at once, even at 10,000."""


class ApiError(Exception):
    """An API call that failed: the HTTP status, the API server's reason (``NotFound``,
    ``Conflict``...) and its message."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"({status}) {reason}" + (f": {message}" if message else ""))
        self.status, self.reason, self.message = status, reason, message


def _reachable(call: Callable[_P, _R]) -> Callable[_P, _R]:
    """An unreachable API server as ``ApiError`` 503."""

    @functools.wraps(call)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return call(*args, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(status=503, reason=f"API server unreachable: {exc}") from exc

    return wrapped


class _Session:
    """The logged-in server: its address, headers and one connection pool."""

    def __init__(self, info: Any) -> None:
        self.server = str(info.server).rstrip("/")
        self.headers = {"Accept": "application/json", **info.as_http_headers()}
        ssl_context = info.as_ssl_context() if self.server.startswith("https") else None
        self.pool = urllib3.PoolManager(
            maxsize=POOL_SIZE,
            timeout=TIMEOUT,
            retries=urllib3.Retry(total=3, redirect=0),  # reads again only idempotent calls
            ssl_context=ssl_context,
        )

    def send(
        self, method: str, path: str, body: object, query: Mapping[str, str], content_type: str
    ) -> urllib3.BaseHTTPResponse:
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self.server + path
        if query:
            url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return self.pool.request(method, url, body=data, headers=headers)


_lock = threading.Lock()
_session: _Session | None = None


def login(info: kopf.ConnectionInfo | None = None) -> None:
    """Use these credentials (a ``kopf.ConnectionInfo``; read now with
    ``kubelogin.credentials`` if none) for the calls from now on."""
    global _session
    session = _Session(info if info is not None else kubelogin.credentials())
    with _lock:
        _session, old = session, _session
    if old is not None:
        old.pool.clear()


def _current(renew: bool = False) -> _Session:
    """The session, logged in now if there is none yet or ``renew`` asks for it."""
    with _lock:
        session = _session
    if session is None or renew:
        try:
            login()
        except kubelogin.LoginError as exc:
            raise ApiError(401, "Unauthorized", str(exc)) from exc
        return _current()
    return session


@_reachable
def _call(
    method: str,
    path: str,
    body: object = None,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> Any:
    """One request; its JSON answer, or ``ApiError``. A 401 logs in once more and retries."""
    response = _current().send(method, path, body, query or {}, content_type)
    if response.status == 401:
        response = _current(renew=True).send(method, path, body, query or {}, content_type)
    if response.status >= 400:
        raise _error(response)
    return response.json() if response.data else None


def _error(response: urllib3.BaseHTTPResponse) -> ApiError:
    """The API server's Status object as ``ApiError`` (its reason, else the HTTP one)."""
    try:
        status = json.loads(response.data)
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    reason = str(status.get("reason") or response.reason or "Error")
    return ApiError(response.status, reason, str(status.get("message") or ""))


def _namespaced(
    namespace: str, plural: str, name: str = "", group: str = "", version: str = "v1"
) -> str:
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    path = f"{root}/namespaces/{quote(namespace, safe='')}/{plural}"
    return f"{path}/{quote(name, safe='')}" if name else path


def _absent_is_none(call: Callable[[], _R], *missing: int) -> _R | None:
    """The call's answer, or None for the statuses that mean "not there" (or "there
    already", for a create)."""
    try:
        return call()
    except ApiError as exc:
        if exc.status in missing:
            return None
        raise


def is_conflict_or_unavailable(exc: BaseException) -> bool:
    """Whether an API error is worth retrying (conflict, throttling, server trouble)."""
    return isinstance(exc, ApiError) and (exc.status in (409, 429) or exc.status >= 500)


# --- Secrets ---


def read_secret(namespace: str, name: str) -> dict[str, Any] | None:
    """A Secret as a plain dict with decoded ``data``, or ``None`` if absent."""
    raw = _absent_is_none(lambda: _call("GET", _namespaced(namespace, "secrets", name)), 404)
    if raw is None:
        return None
    raw["data"] = {k: base64.b64decode(v).decode() for k, v in (raw.get("data") or {}).items()}
    return dict(raw)


def create_secret_once(namespace: str, body: dict[str, Any]) -> str | None:
    """Create a Secret; its ``resourceVersion``, or ``None`` if one of that name exists."""
    made = _absent_is_none(lambda: _call("POST", _namespaced(namespace, "secrets"), body), 409)
    return None if made is None else str(made["metadata"]["resourceVersion"])


def create_secret(namespace: str, body: dict[str, Any]) -> bool:
    """Create a Secret; ``False`` if one of that name exists already (it is left alone)."""
    return create_secret_once(namespace, body) is not None


def patch_secret_at(namespace: str, body: dict[str, Any], resource_version: str) -> str | None:
    """Patch a Secret only if it is still at ``resource_version`` (optimistic concurrency);
    its new ``resourceVersion``, or ``None`` if someone changed it in between."""
    versioned = {**body, "metadata": {**body["metadata"], "resourceVersion": resource_version}}
    path = _namespaced(namespace, "secrets", body["metadata"]["name"])
    patched = _absent_is_none(lambda: _call("PATCH", path, versioned, None, MERGE_PATCH), 409)
    return None if patched is None else str(patched["metadata"]["resourceVersion"])


# --- Events ---

EVENT_MESSAGE_LIMIT = 1024
"""Characters of an event message the API server is sure to keep."""


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
    _call("POST", _namespaced(involved["namespace"], "events"), body)


# --- Custom objects (Migrations, Backups, Operations) and kopf's peering ---


def _items(listed: Any) -> list[dict[str, Any]]:
    return [dict(item) for item in (listed or {}).get("items") or []]


def list_custom_objects(group: str, version: str, namespace: str, plural: str) -> list[Any]:
    """Every object of one custom kind in a namespace, as plain dicts."""
    return _items(_call("GET", _namespaced(namespace, plural, group=group, version=version)))


def list_labelled_objects(
    group: str, version: str, namespace: str, plural: str, selector: str
) -> list[dict[str, Any]]:
    """The custom objects of a namespace matching a label selector."""
    path = _namespaced(namespace, plural, group=group, version=version)
    return _items(_call("GET", path, query={"labelSelector": selector}))


def list_pages(
    group: str, version: str, plural: str, namespace: str | None, page: int = PAGE
) -> Iterator[dict[str, Any]]:
    """Every object of one custom kind, in one namespace or all, ``page`` at a time
    (the API server's ``limit`` and ``continue``: no answer holds them all)."""
    path = (
        _namespaced(namespace, plural, group=group, version=version)
        if namespace
        else f"/apis/{group}/{version}/{plural}"
    )
    token = ""
    while True:
        query = {"limit": str(page), **({"continue": token} if token else {})}
        listed = _call("GET", path, query=query) or {}
        yield from _items(listed)
        token = str((listed.get("metadata") or {}).get("continue") or "")
        if not token:
            return


def read_custom_object(
    group: str, version: str, namespace: str, plural: str, name: str
) -> dict[str, Any] | None:
    """One custom object as a plain dict, or ``None`` if absent."""
    path = _namespaced(namespace, plural, name, group, version)
    found = _absent_is_none(lambda: _call("GET", path), 404)
    return None if found is None else dict(found)


def create_custom_object(
    group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
) -> dict[str, Any] | None:
    """Create a custom object; ``None`` if one of that name exists already."""
    path = _namespaced(namespace, plural, group=group, version=version)
    made = _absent_is_none(lambda: _call("POST", path, body), 409)
    return None if made is None else dict(made)


def delete_custom_object(group: str, version: str, namespace: str, plural: str, name: str) -> None:
    """Delete a custom object (absent already is fine)."""
    path = _namespaced(namespace, plural, name, group, version)
    _absent_is_none(lambda: _call("DELETE", path), 404)


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
    path = _namespaced(namespace, plural, name, group, version) + "/status"
    _call("PATCH", path, body, None, MERGE_PATCH)


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
    except ApiError as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


def read_peering(
    group: str, version: str, name: str, namespace: str | None
) -> dict[str, Any] | None:
    """kopf's peering object: the ``KopfPeering`` of a namespace, or the cluster's
    ``ClusterKopfPeering`` (``namespace`` None); ``None`` if absent. Listed by name, not
    read: the verbs kopf needs on it (list, watch, patch) are all the chart grants."""
    if namespace is None:
        path = f"/apis/{group}/{version}/clusterkopfpeerings"
    else:
        path = _namespaced(namespace, "kopfpeerings", group=group, version=version)
    items = _items(_call("GET", path, query={"fieldSelector": f"metadata.name={name}"}))
    return items[0] if items else None
