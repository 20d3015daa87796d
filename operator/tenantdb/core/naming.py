"""Names of every PostgreSQL object a tenant owns, validated before use.

Names are derived, never taken verbatim from users: a readable part from
the Tenant's name plus a hash of its UID (for a namespace's shared space,
from the namespace's name plus a hash of it). The hash makes two tenants (in
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
NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""A Kubernetes namespace name (an RFC 1123 label)."""
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


DEFAULT_SHARED_PREFIX = "tenantdb_shared"
"""``DatabaseSettings.shared_schema``'s default: the legacy schema's name, and the start
of every namespace's shared schema."""
SHARED_SUFFIXES = ("_owner", "_tenants", "_pooled")
"""Suffixes of the shared space's roles, appended to its schema's name."""


def namespace_name(namespace: str) -> str:
    """Check a Kubernetes namespace name (the API server refuses the same)."""
    if not NAMESPACE.fullmatch(namespace):
        raise errors.InvalidName(
            f"namespace {namespace!r} must be 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return namespace


@dataclass(frozen=True)
class SharedNames:
    """The schema and roles of one shared space (``shared`` tenants and
    ``scope: shared`` migrations of one namespace)."""

    schema: Identifier
    """The schema holding the shared tables."""
    owner_role: Identifier
    """Owns the schema and its tables; ``scope: shared`` migrations log in as it."""
    members_role: Identifier
    """Group of the space's tenants' LOGIN roles: table privileges go through it."""
    pooled_role: Identifier
    """Group of application roles that choose a tenant per transaction."""

    @property
    def roles(self) -> tuple[Identifier, Identifier, Identifier]:
        """The owner and the two groups."""
        return (self.owner_role, self.members_role, self.pooled_role)


def shared_names(namespace: str, prefix: str = DEFAULT_SHARED_PREFIX) -> SharedNames:
    """The shared space of a namespace: ``<prefix>_<namespace>_<hash>`` (the prefix is
    ``DatabaseSettings.shared_schema``, so two installations on one database that
    name different legacy schemas get different spaces).

    The readable part is cut so that the longest role name fits in 63 bytes;
    the hash of the whole namespace name keeps two namespaces that share a
    readable part apart.
    """
    digest = hashlib.sha256(namespace_name(namespace).encode()).hexdigest()[:HASH_LENGTH]
    longest = max(len(suffix) for suffix in SHARED_SUFFIXES)
    room = MAX_IDENTIFIER_BYTES - len(prefix) - 2 - HASH_LENGTH - longest
    if room < 1:
        raise errors.InvalidName(
            f"shared schema prefix {prefix!r} leaves no room for the namespace in 63 bytes"
        )
    readable = namespace.replace("-", "_")[:room].rstrip("_")
    schema = f"{identifier(prefix)}_{readable}_{digest}"
    return SharedNames(
        schema=identifier(schema),
        owner_role=identifier(f"{schema}_owner"),
        members_role=identifier(f"{schema}_tenants"),
        pooled_role=identifier(f"{schema}_pooled"),
    )
