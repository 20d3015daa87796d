"""Seeders written as ``.sql`` files: a small header, the statements, an optional undo.

Owns the file format only::

    -- name: settings
    -- version: 1
    -- profile: production
    -- depends: roles, plans
    -- description: Default settings every tenant starts with.

    INSERT INTO settings (key, value) VALUES ('locale', '"en"') ON CONFLICT DO NOTHING;

    -- unseed
    DELETE FROM settings WHERE key = 'locale';

The header is the run of ``-- key: value`` lines at the top; ``name``,
``version`` and ``profile`` are required, ``depends`` and ``description``
optional, any other key is refused (a typo must not pass silently). A line
holding only ``-- unseed`` starts the statements that remove the seeder's
data; development seeders must have them. The statements are sent as they
are, inside the tenant's scoped transaction.
"""

import hashlib
import re

from tenantdb.core.seeding import context, declarations, errors

HEADER_LINE = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
UNSEED_MARKER = re.compile(r"^--\s*unseed\s*$", re.IGNORECASE | re.MULTILINE)
KEYS = frozenset({"name", "version", "profile", "depends", "description"})
REQUIRED = ("name", "version", "profile")


def parse(source: str, text: str) -> declarations.Seeder:
    """The seeder declared by one ``.sql`` file's text (``source``: its file name)."""
    header = _header(source, text)
    body, _, undo = (part.strip() for part in _split(source, text))
    if not _has_statements(body):
        raise errors.InvalidSeeder(f"seeder {source}: no statements to run")
    version: object = header["version"]
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    depends = [d.strip() for d in header.get("depends", "").split(",") if d.strip()]
    return declarations.declare(
        name=header["name"],
        version=version,
        profile=header["profile"],
        depends_on=depends,
        description=header.get("description", ""),
        kind=declarations.Kind.SQL,
        source=source,
        checksum=hashlib.sha256(text.encode()).hexdigest(),
        seed=_script(body),
        unseed=_script(undo) if _has_statements(undo) else None,
    )


def _header(source: str, text: str) -> dict[str, str]:
    header: dict[str, str] = {}
    for line in text.splitlines():
        match = HEADER_LINE.match(line.strip())
        if not match:
            break
        key, value = match.groups()
        if key not in KEYS:
            raise errors.InvalidSeeder(
                f"seeder {source}: unknown header {key!r} (known: {', '.join(sorted(KEYS))})"
            )
        if key in header:
            raise errors.InvalidSeeder(f"seeder {source}: header {key!r} is given twice")
        header[key] = value
    missing = [key for key in REQUIRED if key not in header]
    if missing:
        raise errors.InvalidSeeder(
            f"seeder {source}: the header lacks {', '.join(missing)} "
            "(lines like '-- version: 1' at the top of the file)"
        )
    return header


def _split(source: str, text: str) -> tuple[str, str, str]:
    markers = list(UNSEED_MARKER.finditer(text))
    if not markers:
        return text, "", ""
    if len(markers) > 1:
        raise errors.InvalidSeeder(f"seeder {source}: only one '-- unseed' line is allowed")
    marker = markers[0]
    return text[: marker.start()], marker.group(0), text[marker.end() :]


def _has_statements(text: str) -> bool:
    """Whether anything but comments and blank lines is left."""
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def _script(statements: str) -> declarations.SeedFunction:
    def run(ctx: context.Context) -> None:
        ctx.execute_script(statements)

    return run
