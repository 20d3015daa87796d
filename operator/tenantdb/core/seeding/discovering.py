"""Finding seeders in a directory: Python modules and ``.sql`` files.

Owns the directory scan and the loading of Python seeder modules. A module
declares, at module level::

    NAME = "sample_users"
    VERSION = 1
    PROFILE = "development"          # or "production"
    DEPENDS_ON = ("roles",)          # optional

    def seed(ctx: seeding.Context) -> None: ...
    def unseed(ctx: seeding.Context) -> None: ...   # required of development seeders

and its docstring's first line is its description. Files whose names start
with ``_`` or ``.`` are helpers, not seeders; seeders import them with
relative imports (``from . import _tables``), because the directory is
loaded as a package of its own. Every call loads the files afresh, so an
operator picks up a changed directory without a restart.
"""

import hashlib
import importlib
import sys
import threading
import types
from pathlib import Path

from tenantdb.core.seeding import declarations, errors, sqlfiles

_LOCK = threading.Lock()
"""Loading rewrites ``sys.modules`` entries of the seeders' package: one loader at a time."""


def discover(directory: Path) -> list[declarations.Seeder]:
    """Every seeder in ``directory``, in file-name order (not yet dependency order)."""
    if not directory.is_dir():
        raise errors.InvalidSeeder(f"the seeders directory {str(directory)!r} does not exist")
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and not p.name.startswith(("_", "."))
    )
    seeders: list[declarations.Seeder] = []
    with _LOCK:
        package = _fresh_package(directory)
        for path in files:
            if path.suffix == ".py":
                seeders.append(_python_seeder(package, path))
            elif path.suffix == ".sql":
                seeders.append(sqlfiles.parse(path.name, path.read_text(encoding="utf-8")))
    return seeders


def _fresh_package(directory: Path) -> str:
    """A package named after the directory, with earlier loads of its modules forgotten."""
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    name = f"_tenantdb_seeders_{digest}"
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    package = types.ModuleType(name, "Seeders loaded by tenantdb")
    package.__path__ = [str(directory.resolve())]
    sys.modules[name] = package
    importlib.invalidate_caches()
    return name


def _python_seeder(package: str, path: Path) -> declarations.Seeder:
    try:
        module = importlib.import_module(f"{package}.{path.stem}")
    except Exception as exc:
        raise errors.InvalidSeeder(
            f"seeder {path.name} cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [attr for attr in ("NAME", "VERSION", "PROFILE", "seed") if not hasattr(module, attr)]
    if missing:
        raise errors.InvalidSeeder(f"seeder {path.name} does not define {', '.join(missing)}")
    seed = module.seed
    unseed = getattr(module, "unseed", None)
    if not callable(seed) or (unseed is not None and not callable(unseed)):
        raise errors.InvalidSeeder(f"seeder {path.name}: seed and unseed must be functions")
    return declarations.declare(
        name=module.NAME,
        version=module.VERSION,
        profile=module.PROFILE,
        depends_on=getattr(module, "DEPENDS_ON", ()),
        description=module.__doc__ or "",
        kind=declarations.Kind.PYTHON,
        source=path.name,
        checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
        seed=seed,
        unseed=unseed,
    )
