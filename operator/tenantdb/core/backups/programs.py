"""Running ``pg_dump`` and ``pg_restore`` as child processes, streamed in flat memory.

A child logs in as a tenant's owner role: host, port and TLS settings come
from the operator's URL, the user and database are the tenant's, and the
password (derived, ``passwords.role_password``) goes only into the child's
``PGPASSWORD``, never onto its command line. Other ``PG*`` variables of the
operator's environment are not passed on, so none can redirect the child.
"""

import contextlib
import fcntl
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Protocol

from psycopg import conninfo

from tenantdb.core import errors, passwords, tenancy

CHUNK = 1 << 20
"""Bytes moved per read: memory stays flat whatever the size of the data."""
APPLICATION = "tenantdb-backup"
_STDERR_KEPT = 8192
_DROPPED = ("password", "passfile", "options", "user", "dbname", "application_name", "service")

Progress = Callable[[int], None]
"""Called with the number of payload bytes moved so far."""


class Sink(Protocol):
    """Where a dump's bytes go."""

    def write(self, data: bytes, /) -> object: ...


class Source(Protocol):
    """Where a restore's bytes come from."""

    def read(self, size: int = -1, /) -> bytes: ...


def child_conninfo(
    server: tenancy.Server, role: str, database: str, application: str = APPLICATION
) -> str:
    """A conninfo naming the server as the operator reaches it, as ``role`` (no password)."""
    params = {
        key: value
        for key, value in conninfo.conninfo_to_dict(server.url).items()
        if key not in _DROPPED and value is not None
    }
    return conninfo.make_conninfo(
        "", **params, user=role, dbname=database, application_name=application
    )


def child_env(server: tenancy.Server, role: str) -> dict[str, str]:
    """The operator's environment without ``PG*``, plus the role's password."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGPASSWORD"] = passwords.role_password(server.sessions.key, role)
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


@contextmanager
def running(
    argv: Sequence[str], env: dict[str, str], stdin: int | None = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[bytes]]:
    """A child with piped stdout (and stdin if asked), its stderr kept for the error;
    killed if the block fails, and a non-zero exit raised as ``BackupError``."""
    process = subprocess.Popen(
        list(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    for pipe in (process.stdout, process.stdin if stdin == subprocess.PIPE else None):
        _widen(pipe)
    kept = bytearray()
    reader = threading.Thread(target=_keep_tail, args=(process.stderr, kept), daemon=True)
    reader.start()
    try:
        yield process
    except BaseException:
        process.kill()
        process.wait()
        reader.join()
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
    code = process.wait()
    reader.join()
    if code != 0:
        name = os.path.basename(argv[0])
        detail = kept.decode(errors="replace").strip()
        raise errors.BackupError(f"{name} failed (exit {code}): {detail}")


def pump(
    read: Callable[[int], bytes], write: Callable[[bytes], object], progress: Progress | None
) -> int:
    """Copy everything ``read`` gives to ``write`` in chunks; the bytes moved."""
    moved = 0
    while chunk := read(CHUNK):
        write(chunk)
        moved += len(chunk)
        if progress is not None:
            progress(moved)
    return moved


def feed(source: Source, stdin: IO[bytes], failures: list[BaseException]) -> threading.Thread:
    """A thread writing ``source`` into a child's stdin, then closing it; what fails is
    put into ``failures`` (a child that stopped reading is not a failure of the feed)."""

    def run() -> None:
        try:
            pump(source.read, stdin.write, None)
        except BrokenPipeError:
            pass
        except BaseException as exc:
            failures.append(exc)
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _widen(pipe: IO[bytes] | None) -> None:
    """A pipe holding a whole ``CHUNK`` (Linux: 64 KiB by default): the child keeps
    writing (or reading) while the operator compresses, hashes or sends the last chunk,
    instead of the two taking turns. Where the system refuses, the pipe stays as it is."""
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, CHUNK)


def _keep_tail(stream: IO[bytes] | None, kept: bytearray) -> None:
    if stream is None:
        return
    while chunk := stream.read(4096):
        kept += chunk
        del kept[:-_STDERR_KEPT]
    stream.close()
