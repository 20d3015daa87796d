"""Child-process plumbing shared by the dev-environment runners.

Owns: free loopback ports, starting a server (or running a command) with its
output appended to a log file, waiting for readiness while watching the
process, stopping processes (SIGTERM, then SIGKILL), reaping leftovers of an
earlier run, files only their owner may read, and the errors the runners
raise. Knows nothing about PostgreSQL or Kubernetes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
"""Every dev server listens here only: nothing is reachable from other machines."""

_TAIL_BYTES = 64 * 1024


class DevEnvError(RuntimeError):
    """A local component could not be prepared, started or stopped."""


class ComponentError(DevEnvError):
    """A component failed; the message ends with the tail of its log."""

    def __init__(self, component: str, problem: str, log_path: Path | None = None) -> None:
        self.component = component
        self.log_path = log_path
        message = f"{component}: {problem}"
        if log_path is not None:
            message += f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
        super().__init__(message)


@dataclass(frozen=True)
class Child:
    """A long-running server we started: its name for messages, process and log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id, for pid files and for tests that check it is gone."""
        return self.process.pid


class Service:
    """Something with ``start()`` and ``stop()``, usable as a context manager."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port nothing listens on right now.

    The kernel picks it, so parallel test workers do not collide. Another
    process could still take it before our server binds; the server then
    exits and its log says so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the end of a log file, so error messages explain themselves."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - _TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(log not readable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None
) -> Child:
    """Start a long-running server with stdout and stderr appended to ``log_path``.

    A file rather than a pipe: nobody has to drain it, so a chatty server
    never blocks, and it is still there to read when startup fails. The
    child gets its own session so that a Ctrl-C meant for us does not kill
    it behind ``stop()``'s back: shutdown order stays ours. ``env``
    replaces our environment when given.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    return Child(name, process, log_path)


def run_logged(
    component: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    timeout: float,
    cwd: Path | None = None,
    check: bool = True,
) -> int:
    """Run a command to completion, its output appended to ``log_path``.

    Returns the exit status. With ``check``, a non-zero status or a timeout
    raises ``ComponentError`` carrying the log's tail, so callers never
    capture and format output themselves.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            completed = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(
                component, f"{Path(argv[0]).name} did not finish in {timeout:g}s", log_path
            ) from exc
    if check and completed.returncode != 0:
        problem = f"{Path(argv[0]).name} exited with status {completed.returncode}"
        raise ComponentError(component, problem, log_path)
    return completed.returncode


def wait_until(
    ready: Callable[[], bool],
    *,
    component: str,
    condition: str,
    timeout: float,
    log_path: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``ready`` until it returns True, failing fast if ``process`` dies.

    Watching the process turns a crashed server (a bad flag, a port taken)
    into an immediate error with its log instead of a timeout much later.
    ``OSError`` from ``ready`` (connection refused, TLS not up yet) counts as
    "not yet"; the last one is reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        if process is not None and process.poll() is not None:
            problem = f"exited with status {process.returncode} before {condition}"
            raise ComponentError(component, problem, log_path)
        try:
            if ready():
                return
        except OSError as exc:
            last_error = f" (last error: {exc})"
        if time.monotonic() >= deadline:
            problem = f"not {condition} after {timeout:g}s{last_error}"
            raise ComponentError(component, problem, log_path)
        time.sleep(interval)


def terminate(child: Child, timeout: float) -> None:
    """Stop a child: SIGTERM for a clean shutdown, SIGKILL if that takes too long."""
    process = child.process
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(child.name, "survived SIGKILL", child.log_path) from exc


def terminate_pid(pid: int, timeout: float) -> None:
    """Like ``terminate`` for a process that is not our ``Popen`` child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, timeout):
            return
    raise DevEnvError(f"process {pid} survived SIGKILL")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone.

    Zombies matter here: a daemonized postmaster is re-parented to whatever
    runs as pid 1, which in a container may never reap it.
    """
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) != "Z"


def command_line(pid: int) -> list[str] | None:
    """The process's arguments (Linux /proc), or None if unknown or gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def write_pid_file(pid_file: Path, pid: int) -> None:
    """Record a server's pid, so a later run can stop it if we die without cleanup."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def reap_leftover(pid_file: Path, marker: str, timeout: float) -> None:
    """Stop the process an earlier run recorded in ``pid_file``, if it still runs.

    A run killed without cleanup leaves servers holding ports and data
    directories. The pid is trusted only if the process's command line still
    mentions ``marker`` (our work directory), so a recycled pid is left alone.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    arguments = command_line(pid)
    if arguments is not None and any(marker in arg for arg in arguments) and pid_alive(pid):
        terminate_pid(pid, timeout)
    pid_file.unlink(missing_ok=True)


def write_private_file(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (keys, passwords, kubeconfigs).

    The mode is set at creation, so the secret is never briefly readable by
    others, and reset afterwards in case the file already existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` is gone or ``timeout`` seconds pass; True if gone."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat (Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may contain spaces; the state follows it.
    return stat.rpartition(")")[2].split()[0]
