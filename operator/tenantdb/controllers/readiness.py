"""Readiness: whether this operator process can do its work now, served for probes.

kopf's own endpoint (``--liveness``) says the process runs; it must stay up
while the database is away, or the kubelet restarts the pod in a loop. This
endpoint (``--readiness``) answers 200 only once the start-up database work
has succeeded (server reached, privileges checked, control schema current)
and while the database answers a ``SELECT 1``; otherwise 503 with the reason,
the same words as the log line. It never touches anything but the pool.
"""

import http.server
import threading
import time
import urllib.parse
from typing import Any

from tenantdb.core import connecting, errors

PING_INTERVAL = 5.0
"""Seconds a database check is reused for (probes of several kubelets, or retries)."""
PING_TIMEOUT = 3.0
"""Seconds a database check waits for a connection."""


class Readiness:
    """The process's readiness: a problem until started, then the database's answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problem: str | None = "starting: the database has not been reached yet"
        self._pool: connecting.Pool | None = None
        self._checked_at = 0.0

    def waiting(self, problem: str) -> None:
        """Not ready: the start-up database work failed for this reason (and is retried)."""
        with self._lock:
            self._pool, self._problem = None, problem

    def started(self, pool: connecting.Pool) -> None:
        """Ready while this pool reaches the database."""
        with self._lock:
            self._pool, self._problem, self._checked_at = pool, None, time.monotonic()

    def problem(self) -> str | None:
        """Why the process is not ready (None: ready); checks the database now and then."""
        with self._lock:
            pool, problem, checked_at = self._pool, self._problem, self._checked_at
        if pool is None or time.monotonic() - checked_at < PING_INTERVAL:
            return problem
        try:
            connecting.ping(pool, PING_TIMEOUT)
            problem = None
        except errors.TenantDBError as exc:
            problem = str(exc)
        with self._lock:
            if self._pool is pool:
                self._problem, self._checked_at = problem, time.monotonic()
        return problem


def serve(endpoint: str, readiness: Readiness) -> http.server.ThreadingHTTPServer:
    """Answer GETs of ``endpoint`` (``http://host:port/path``) on a thread of its own."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme != "http" or parts.port is None:
        raise ValueError(f"readiness endpoint {endpoint!r}: expected http://host:port/path")
    path = parts.path or "/"

    class Probe(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path != path:
                self._answer(404, "not found")
                return
            problem = readiness.problem()
            if problem is None:
                self._answer(200, "ready")
            else:
                self._answer(503, problem)

        def _answer(self, code: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds are not news."""

    server = http.server.ThreadingHTTPServer((parts.hostname or "127.0.0.1", parts.port), Probe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="tenantdb-readiness", daemon=True).start()
    return server
