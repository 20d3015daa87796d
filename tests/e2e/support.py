"""Small helpers the end-to-end suites share: manifests, connections, polling."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Callable

import psycopg

from tenantdb.devenv import operator_process, processes


def tenant(name: str, **spec: object) -> str:
    lines = [f"  {key}: {value}" for key, value in spec.items()]
    return "\n".join(
        [
            "apiVersion: tenantdb.io/v1alpha1",
            "kind: Tenant",
            "metadata:",
            f"  name: {name}",
            "spec:",
            *lines,
        ]
    )


def connect(creds: dict[str, str]) -> psycopg.Connection:
    return psycopg.connect(creds["uri"], autocommit=True, connect_timeout=10)


def create_as_owner(admin: psycopg.Connection, status: dict[str, str], statement: str) -> None:
    """DDL the way migrations run it: as the tenant's owner role, in its schema."""
    with admin.transaction():
        admin.execute(f'SET LOCAL ROLE "{status["ownerRole"]}"')
        admin.execute(f'SET LOCAL search_path = "{status["schema"]}"')
        admin.execute(statement)


def eventually(
    check: Callable[[], bool], timeout: float = 60.0, describe: Callable[[], object] | None = None
) -> None:
    """Poll ``check`` until it holds; on timeout, say what ``describe`` sees then."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            seen = f": {describe()}" if describe is not None else ""
            raise AssertionError(f"condition not reached in time{seen}")
        time.sleep(0.5)


def scrape(operator: operator_process.OperatorProcess) -> dict[str, float]:
    """The operator's Prometheus samples, by name with labels."""
    url = f"http://127.0.0.1:{operator.extra_env['TENANTDB_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


class Forwarder:
    """Accepts on a loopback port and pipes each connection to ``target``.

    ``cut()`` partitions the link as a network failure would, without
    resetting anything: bytes stop flowing both ways and new connections wait
    (as unanswered SYNs do) until ``restore()``, when everything carries on
    unless an end gave up meanwhile. ``retarget`` sends new connections to
    another port (a restarted server)."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.port = port
        self._flowing = threading.Event()
        self._flowing.set()
        self.listener = socket.create_server((processes.LOOPBACK, port))
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()

    def retarget(self, target: tuple[str, int]) -> None:
        self.target = target

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._flowing.wait()
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()  # the server is down: the client sees its connection closed
            return
        ends = [0]
        lock = threading.Lock()
        for source, sink in ((client, upstream), (upstream, client)):
            args = (source, sink, (client, upstream), ends, lock)
            threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        ends: list[int],
        lock: threading.Lock,
    ) -> None:
        """Copy one direction; at its end pass the EOF on (``shutdown``, which a ``close``
        would not do while the other direction's thread is in ``recv``: the server would
        keep a dead client's session, and its locks); the second end closes both."""
        with contextlib.suppress(OSError):  # a peer gone ends the pipe
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        self._flowing.wait()  # a cut link carries no EOF either
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with lock:
            ends[0] += 1
            if ends[0] == 2:
                for end in pair:
                    end.close()

    def close(self) -> None:
        self.listener.close()
