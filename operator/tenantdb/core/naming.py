"""Names of every PostgreSQL object a tenant owns, validated before use.

Names are derived, never taken verbatim from users: a readable part from
the Tenant's name plus a hash of its UID. The hash makes two tenants (in
different namespaces, or a tenant re-created under the same name) map to
different objects; the length check means PostgreSQL never truncates a name
to 63 bytes and so never makes two of them collide.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import NewType

from tenantdb.core import errors

Identifier = NewType("Identifier", str)
"""A validated, lowercase PostgreSQL identifier (still quoted when used)."""

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated."""

TENANT_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
RESERVED_PREFIXES = ("pg_",)
RESERVED_NAMES = frozenset({"public", "information_schema", "postgres", "template0", "template1"})
HASH_LENGTH = 10


def identifier(name: str) -> Identifier:
    """Check that ``name`` is safe and unambiguous as an identifier."""
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise errors.InvalidName(f"{name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if not IDENTIFIER.fullmatch(name):
        raise errors.InvalidName(
            f"{name!r} must be lowercase ASCII letters, digits and '_', not starting with a digit"
        )
    if name.startswith(RESERVED_PREFIXES) or name in RESERVED_NAMES:
        raise errors.InvalidName(f"{name!r} is reserved")
    return Identifier(name)


def tenant_name(name: str) -> str:
    """Check a Tenant object's name (the CRD refuses the same, this is defence in depth)."""
    if not TENANT_NAME.fullmatch(name) or name.startswith("pg-"):
        raise errors.InvalidName(
            f"tenant name {name!r} must be 1-40 lowercase letters, digits or '-', "
            "start with a letter and end with a letter or digit, and not start with 'pg-'"
        )
    return name


@dataclass(frozen=True)
class TenantNames:
    """Where a tenant's data lives and which roles it uses."""

    schema: Identifier
    """The tenant's schema (schema isolation) and the base of the other names."""
    owner_role: Identifier
    """NOLOGIN role that owns the tenant's objects."""
    login_role: Identifier
    """LOGIN role the application connects as."""
    database: Identifier
    """The tenant's database (database isolation)."""


def uid_hash(uid: str) -> str:
    """A short, stable hash of the Tenant's UID."""
    return hashlib.sha256(uid.encode()).hexdigest()[:HASH_LENGTH]


def tenant_names(name: str, uid: str) -> TenantNames:
    """Derive every object name of a tenant from its name and UID."""
    base = f"t_{tenant_name(name).replace('-', '_')}_{uid_hash(uid)}"
    return TenantNames(
        schema=identifier(base),
        owner_role=identifier(f"{base}_owner"),
        login_role=identifier(base),
        database=identifier(base),
    )
