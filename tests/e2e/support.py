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


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
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
    """Accepts on a loopback port and pipes each connection to ``target``."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((processes.LOOPBACK, port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with source, sink, contextlib.suppress(OSError):  # a peer gone ends the pipe
            while data := source.recv(65536):
                sink.sendall(data)

    def close(self) -> None:
        self.listener.close()
