"""A real S3-compatible server (versitygw) for dev and tests.

Owns: finding (or building) the binary through ``hack/s3-server.sh``,
starting it on a free loopback port with a directory backend and generated
root keys, waiting until it answers, creating buckets, and stopping it. It
imports no other tenantdb layer.

Layout of ``work_dir``: ``buckets/`` (one directory per bucket, objects as
files), ``meta/`` (object metadata, so the backend needs no extended
attributes), ``access-key`` and ``secret-key`` (0600, reused by later
starts), ``logs/s3.log``.
"""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config

from tenantdb.devenv import processes

S3_SERVER_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "s3-server.sh"
"""Builds versitygw once and prints the path of the binary."""

REGION = "us-east-1"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class Endpoint:
    """How a client reaches the server: URL, region and root keys."""

    url: str
    region: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


def find_binary(build: bool = True) -> Path:
    """The versitygw binary; ``build`` compiles it on first use (a few minutes)."""
    if not S3_SERVER_SCRIPT.is_file():
        raise processes.DevEnvError(f"{S3_SERVER_SCRIPT} not found: needs a source checkout")
    for action in ("path", "build") if build else ("path",):
        completed = subprocess.run(
            ["bash", str(S3_SERVER_SCRIPT), action],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if action == "path" else None,
            text=True,
            check=False,
        )
        lines = completed.stdout.strip().splitlines()
        if completed.returncode == 0 and lines:
            return Path(lines[-1])
    raise processes.DevEnvError("no S3 server binary: hack/s3-server.sh build failed")


class ObjectStore(processes.Service):
    """One versitygw server over one directory, reachable on 127.0.0.1."""

    def __init__(
        self,
        work_dir: Path,
        binary: Path | None = None,
        *,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.work_dir = work_dir.absolute()
        self.binary = binary
        self.startup_timeout = startup_timeout
        """Seconds the server may take to answer its health check."""
        self.stop_timeout = stop_timeout
        """Seconds the server gets after SIGTERM before SIGKILL."""
        self.log_file = self.work_dir / "logs" / "s3.log"
        self._pid_file = self.work_dir / "run" / "versitygw.pid"
        self._child: processes.Child | None = None
        self._endpoint: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint:
        """URL and keys of the running server."""
        if self._endpoint is None:
            raise processes.DevEnvError("the S3 server is not running")
        return self._endpoint

    def start(self) -> None:
        """Start the server on a free port; return once it answers its health check."""
        binary = self.binary or find_binary()
        processes.reap_leftover(self._pid_file, str(self.work_dir), self.stop_timeout)
        buckets, meta = self.work_dir / "buckets", self.work_dir / "meta"
        buckets.mkdir(parents=True, exist_ok=True)
        meta.mkdir(parents=True, exist_ok=True)
        access = self._key("access-key", secrets.token_hex(10).upper())
        secret = self._key("secret-key", secrets.token_urlsafe(30))
        port = processes.free_port()
        argv = [
            str(binary),
            "--port",
            f"{processes.LOOPBACK}:{port}",
            "--region",
            REGION,
            "--health",
            HEALTH_PATH,
            "--quiet",
            "posix",
            "--sidecar",
            str(meta),
            str(buckets),
        ]
        # Keys go through the environment: a command line is readable by every user.
        env = dict(os.environ, ROOT_ACCESS_KEY_ID=access, ROOT_SECRET_ACCESS_KEY=secret)
        self._child = processes.spawn("versitygw", argv, self.log_file, env=env)
        processes.write_pid_file(self._pid_file, self._child.pid)
        processes.wait_until(
            lambda: _healthy(port),
            component="versitygw",
            condition="answering",
            timeout=self.startup_timeout,
            log_path=self.log_file,
            process=self._child.process,
        )
        url = f"http://{processes.LOOPBACK}:{port}"
        self._endpoint = Endpoint(url, REGION, access, secret)

    def stop(self) -> None:
        """Stop the server; its buckets stay in ``work_dir``."""
        if self._child is not None:
            processes.terminate(self._child, self.stop_timeout)
            self._child = None
        self._pid_file.unlink(missing_ok=True)
        self._endpoint = None

    def create_bucket(self, name: str, exist_ok: bool = False) -> str:
        """Create a bucket (path-style, as the server has no DNS names) and return its name."""
        endpoint = self.endpoint
        client = boto3.client(
            "s3",
            endpoint_url=endpoint.url,
            region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key_id,
            aws_secret_access_key=endpoint.secret_access_key,
            config=Config(s3={"addressing_style": "path"}),
        )
        try:
            client.create_bucket(Bucket=name)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if not (exist_ok and code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}):
                raise
        return name

    def _key(self, file_name: str, generated: str) -> str:
        """The key kept in ``file_name`` (0600), else ``generated``, kept for later starts."""
        path = self.work_dir / file_name
        if not path.exists():
            processes.write_private_file(path, generated.encode())
        return path.read_text().strip()


def _healthy(port: int) -> bool:
    """GET the health endpoint: 200 once the server serves requests."""
    connection = http.client.HTTPConnection(processes.LOOPBACK, port, timeout=2)
    try:
        connection.request("GET", HEALTH_PATH)
        return connection.getresponse().status == http.client.OK
    finally:
        connection.close()
