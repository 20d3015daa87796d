"""The operator as a real, separate process (`tenantdb run`), as in production.

Used by `tenantdb dev up` and by the end-to-end tests, which also SIGKILL
it mid-work. Started means kopf's liveness endpoint answers and the
operator's readiness endpoint says ready: the database was reached and the
control schema is current.
"""

from __future__ import annotations

import functools
import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tenantdb.devenv import processes


class OperatorProcess:
    """One `tenantdb run` process talking to one API server and one database."""

    def __init__(
        self,
        kubeconfig: Path,
        database_url: str,
        log_path: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.database_url = database_url
        self.log_path = log_path
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self._child: processes.Child | None = None
        self._port: int | None = None
        self.readiness_url = f"http://{processes.LOOPBACK}:{processes.free_port()}/readyz"
        """The readiness endpoint: 200 once the database is reached, 503 with the reason."""

    @property
    def pid(self) -> int | None:
        """The running process's id, or None."""
        return self._child.pid if self._child and self._child.process.poll() is None else None

    def environment(self) -> dict[str, str]:
        """What the process is started with: ours, plus where to find its peers."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "DATABASE_URL": self.database_url,
            "TENANTDB_ENVIRONMENT": "development",
            "TENANTDB_RETRY_DELAY": "2",
            **self.extra_env,
        }

    def start(self, ready: bool = True) -> None:
        """Start the process and wait until kopf reports itself alive (and, with
        ``ready``, until the operator is ready)."""
        self._port = processes.free_port()
        liveness = f"http://{processes.LOOPBACK}:{self._port}/healthz"
        argv = [sys.executable, "-m", "tenantdb", "run", "--liveness", liveness]
        argv += ["--readiness", self.readiness_url]
        self._child = processes.spawn("operator", argv, self.log_path, env=self.environment())
        waits = [(liveness, "alive")] + ([(self.readiness_url, "ready")] if ready else [])
        for url, condition in waits:
            processes.wait_until(
                functools.partial(_answers, url),
                component="operator",
                condition=condition,
                timeout=self.startup_timeout,
                log_path=self.log_path,
                process=self._child.process,
            )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (kopf finishes its handlers), SIGKILL after ``timeout``."""
        if self._child is not None:
            processes.terminate(self._child, timeout)
            self._child = None

    def kill(self) -> None:
        """SIGKILL, as a crashed node or an OOM kill would."""
        if self._child is not None:
            self._child.process.kill()
            self._child.process.wait()
            self._child = None


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback http only
        return bool(response.status == 200)
