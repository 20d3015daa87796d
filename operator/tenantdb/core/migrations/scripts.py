"""Migration scripts: what one version changes, its checksum, and its files.

A ``Script`` is the engine's view of one migration, whether it came from a
``Migration`` object or from a file in a script directory. Its checksum is
the sha256 of the *normalised* ``up`` (line endings, trailing blanks), so
re-indenting a YAML block or saving a file on Windows is not drift, while
any change to what PostgreSQL would run is.

A script file is named ``<version>_<words>.sql`` and reads::

    -- description: Leads imported from campaigns
    -- migrate:up transaction:false lock-timeout:10s
    CREATE INDEX CONCURRENTLY ...;
    -- migrate:down
    DROP INDEX CONCURRENTLY ...;

Options on the ``migrate:up`` line: ``transaction:false``, ``scope:shared``,
``lock-timeout:<duration>``, ``statement-timeout:<duration>``.
"""

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from tenantdb import settings
from tenantdb.api import API_VERSION
from tenantdb.api import migrations as api
from tenantdb.core.migrations import errors, statements

FILE_NAME = re.compile(r"^(?P<version>[0-9]{1,14})_(?P<words>[a-z0-9_]+)\.sql$")
UP_MARKER = "-- migrate:up"
DOWN_MARKER = "-- migrate:down"
DESCRIPTION_PREFIX = "-- description:"
_DURATION = re.compile(api.DURATION_PATTERN)


@dataclass(frozen=True)
class Script:
    """One versioned change, as the engine runs it."""

    version: int
    name: str
    """The Migration object's or the file's name, recorded in the ledger."""
    up: str
    down: str | None = None
    description: str = ""
    scope: api.Scope = api.Scope.TENANT
    transactional: bool = True
    lock_timeout: str = "5s"
    statement_timeout: str = "15min"

    @functools.cached_property
    def checksum(self) -> str:
        """sha256 of the normalised ``up``."""
        return checksum(self.up)

    def problems(self) -> list[str]:
        """Why the script must not run (forbidden statements in ``up`` or ``down``)."""
        found = [f"up: {p}" for p in statements.forbidden(self.up)]
        if self.down:
            found += [f"down: {p}" for p in statements.forbidden(self.down)]
        return found


def normalise(text: str) -> str:
    """Unix line endings, no trailing blanks on a line, no leading or trailing blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def checksum(text: str) -> str:
    """sha256 (hex) of the normalised text."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()


SPEC_FIELDS = (
    "version",
    "up",
    "down",
    "description",
    "scope",
    "transactional",
    "lock_timeout",
    "statement_timeout",
)
"""The fields a ``Script`` and a ``MigrationSpec`` share, under the same names."""


def from_spec(name: str, spec: api.MigrationSpec) -> Script:
    """The script a ``Migration`` object describes."""
    return Script(name=name, **{field: getattr(spec, field) for field in SPEC_FIELDS})


def parse_file(path: Path) -> Script:
    """One script file; raises ``InvalidScript`` naming the file and the problem."""
    match = FILE_NAME.match(path.name)
    if not match:
        raise errors.InvalidScript(
            f"{path.name}: script files are named <version>_<words>.sql (lowercase words)"
        )
    return parse_text(path.read_text(), int(match["version"]), path.stem, match["words"])


def parse_text(text: str, version: int, name: str, words: str = "") -> Script:
    """A script from its text (the content of a script file)."""
    lines = normalise(text).split("\n")
    ups = [i for i, line in enumerate(lines) if line.startswith(UP_MARKER)]
    downs = [i for i, line in enumerate(lines) if line.startswith(DOWN_MARKER)]
    if len(ups) != 1 or len(downs) > 1 or (downs and downs[0] < ups[0]):
        raise errors.InvalidScript(
            f"{name}: expected one '{UP_MARKER}' line, then at most one '{DOWN_MARKER}' line"
        )
    up_at = ups[0]
    down_at = downs[0] if downs else len(lines)
    header = lines[:up_at]
    description = next(
        (
            line[len(DESCRIPTION_PREFIX) :].strip()
            for line in header
            if line.startswith(DESCRIPTION_PREFIX)
        ),
        words.replace("_", " "),
    )
    options = _options(name, lines[up_at][len(UP_MARKER) :])
    up = normalise("\n".join(lines[up_at + 1 : down_at]))
    down = normalise("\n".join(lines[down_at + 1 :])) if downs else ""
    if not up:
        raise errors.InvalidScript(f"{name}: the up section is empty")
    return Script(
        version=version,
        name=name,
        up=up,
        down=down or None,
        description=description[:256],
        **options,
    )


def _options(name: str, raw: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in raw.split():
        key, _, value = item.partition(":")
        if key == "transaction" and value in ("true", "false"):
            options["transactional"] = value == "true"
        elif key == "scope" and value in {s.value for s in api.Scope}:
            options["scope"] = api.Scope(value)
        elif key in ("lock-timeout", "statement-timeout") and _DURATION.match(value):
            if api.milliseconds(value) > api.MAX_TIMEOUT_MS:
                raise errors.InvalidScript(f"{name}: {key} {value!r} {settings.TIMEOUT_LIMIT}")
            options[key.replace("-", "_")] = value
        else:
            raise errors.InvalidScript(f"{name}: unknown option {item!r} on the up line")
    return options


def load_directory(directory: Path) -> list[Script]:
    """Every ``*.sql`` script of a directory, in version order; versions must be unique."""
    scripts = [parse_file(path) for path in sorted(directory.glob("*.sql"))]
    seen: dict[int, str] = {}
    for script in scripts:
        if script.version in seen:
            raise errors.InvalidScript(
                f"version {script.version} is used by {seen[script.version]} and {script.name}"
            )
        seen[script.version] = script.name
    return sorted(scripts, key=lambda s: s.version)


def object_name(script: Script) -> str:
    """The Migration object's name for a script file: ``0004_leads`` becomes ``0004-leads``."""
    return script.name.replace("_", "-")[:253]


def manifest(script: Script, namespace: str | None = None) -> dict[str, Any]:
    """A ``Migration`` manifest for ``kubectl apply`` or a kustomization."""
    try:
        spec = api.MigrationSpec(**{field: getattr(script, field) for field in SPEC_FIELDS})
    except pydantic.ValidationError as exc:
        raise errors.InvalidScript(f"{script.name}: {exc.errors(include_url=False)}") from exc
    metadata: dict[str, Any] = {
        "name": object_name(script),
        "labels": {"app.kubernetes.io/managed-by": "tenantdb"},
    }
    if namespace:
        metadata["namespace"] = namespace
    body = spec.to_api()
    for default_only in ("strategy", "approved", "dryRun", "rollback"):
        body.pop(default_only, None)
    return {"apiVersion": API_VERSION, "kind": "Migration", "metadata": metadata, "spec": body}
