"""How many Tenants of a namespace are Ready, followed with a watch, not polled.

A LIST of 10,000 Tenants every second is some 40 MB of JSON for the API server
to encode and the benchmark to decode, each second: on 2 cores that alone
would slow what is measured. A watch sends each change once. One thread
reads the stream; the server ends a watch now and then (``timeoutSeconds``),
and the next one resumes from the last resourceVersion seen (bookmarks keep
it fresh); a 410 Gone lists again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import urllib3

from tenantdb.controllers import kubelogin

WATCH_SECONDS = 300
"""How long one watch request lasts before the server ends it and we resume."""


class ReadyWatch:
    """A thread following one namespace's Tenants; ``ready()`` is the count now."""

    def __init__(self, group: str, version: str, namespace: str) -> None:
        info = kubelogin.credentials()
        self._server = str(info.server).rstrip("/")
        self._headers = {"Accept": "application/json", **info.as_http_headers()}
        ssl = info.as_ssl_context() if self._server.startswith("https") else None
        self._pool = urllib3.PoolManager(maxsize=2, ssl_context=ssl, retries=False)
        self._path = f"/apis/{group}/{version}/namespaces/{namespace}/tenants"
        self._ready: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self.lists = 0
        self.watches = 0
        self._thread = threading.Thread(target=self._follow, name="ready-watch", daemon=True)
        self._version = self._list()
        self._thread.start()

    def ready(self) -> int:
        if self._failure is not None:
            raise RuntimeError("the watch of Ready stopped") from self._failure
        with self._lock:
            return sum(self._ready.values())

    def stop(self) -> None:
        self._stopping.set()
        self._pool.clear()  # ends the watch being read
        self._thread.join(timeout=10)

    def _list(self) -> str:
        self.lists += 1
        listed = self._get(self._path).json()
        with self._lock:
            self._ready = {obj["metadata"]["uid"]: is_ready(obj) for obj in listed["items"]}
        return str(listed["metadata"]["resourceVersion"])

    def _get(self, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        response = self._pool.request("GET", self._server + url, headers=self._headers, **kwargs)
        if response.status == 410:
            raise _Gone()
        if response.status >= 400:
            raise RuntimeError(f"GET {url}: {response.status} {response.read()[:200]!r}")
        return response

    def _follow(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # the benchmark's loop raises it, not waits an hour
            self._failure = exc

    def _watch(self) -> None:
        while not self._stopping.is_set():
            query = (
                f"?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}"
                f"&resourceVersion={self._version}"
            )
            self.watches += 1
            try:
                response = self._get(self._path + query, preload_content=False)
                for line in _lines(response):
                    self._apply(json.loads(line))
            except urllib3.exceptions.HTTPError:
                if self._stopping.is_set():
                    return
            except _Gone:
                self._version = self._list()

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            raise _Gone() if obj.get("code") == 410 else RuntimeError(f"watch: {obj}")
        self._version = str(obj["metadata"]["resourceVersion"])
        if kind == "BOOKMARK":
            return
        uid = obj["metadata"]["uid"]
        with self._lock:
            if kind == "DELETED":
                self._ready.pop(uid, None)
            else:
                self._ready[uid] = is_ready(obj)


class _Gone(Exception):
    """The resourceVersion we resume from is too old: list again."""


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    pending = b""
    for chunk in response.stream(64 * 1024):
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from (line for line in whole if line.strip())


def is_ready(obj: dict[str, Any]) -> bool:
    """Whether a Tenant, as the API server gives it, has ``Ready=True``."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
