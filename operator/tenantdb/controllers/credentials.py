"""The Secret holding a tenant's connection credentials.

Its name is fixed by the Tenant's name; it is owned by the Tenant (so the
garbage collector removes it with the Tenant) and refused if someone else's
Secret already has that name. Passwords never leave this module except
into the Secret and into ``core`` (as a SCRAM verifier).

The Secret is where a password is decided, never a process's memory: a new
password is stored with a create-only write (or, rotating, a write at the
version read) before any role gets it, and ``core`` sets the role's password
from what the Secret holds, read under the tenant's lock. Two operator
processes reconciling one new Tenant therefore agree on its password.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tenantdb.controllers import kube
from tenantdb.core import passwords

MANAGED_BY = {"app.kubernetes.io/managed-by": "tenantdb"}


class SecretConflict(Exception):
    """A Secret of that name exists and does not belong to this Tenant."""

    reason = "SecretConflict"


@dataclass(frozen=True)
class Credentials:
    """What an application needs to connect as the tenant."""

    host: str
    port: str
    database: str
    username: str
    password: str = field(repr=False)
    """Never in ``repr()``: credentials objects end up in logs and tracebacks."""
    tenant_id: str | None = None
    """The ``tenant_id`` of the tenant's rows, for ``shared`` tenants."""
    tenant_token: str | None = field(default=None, repr=False)
    """What a pooled application passes to ``set_tenant`` with ``tenant_id``."""

    @property
    def uri(self) -> str:
        """A libpq URI with the password percent-encoded."""
        return (
            f"postgresql://{quote(self.username, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )

    def as_data(self) -> dict[str, str]:
        """The Secret's keys."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.username,
            "password": self.password,
            "uri": self.uri,
            **({"tenantId": self.tenant_id} if self.tenant_id else {}),
            **({"tenantToken": self.tenant_token} if self.tenant_token else {}),
        }


def secret_name(tenant: str) -> str:
    """The credentials Secret of a Tenant."""
    return f"{tenant}-credentials"


def existing(namespace: str, tenant: str, owner_uid: str) -> dict[str, str]:
    """What this Tenant's Secret holds (empty if there is none yet)."""
    return _owned_data(kube.read_secret(namespace, secret_name(tenant)), tenant, owner_uid)


@dataclass
class StoredPassword:
    """The Tenant's password as its Secret holds it: a ``core.tenancy.PasswordSource``.

    Called under the tenant's lock. The first call for a Tenant without a
    Secret stores a new password with a create-only write; losing that race
    (409) means another process stored one, and that one is used. ``rotate``
    replaces the stored password, at the version read.
    """

    namespace: str
    tenant: str
    owner: dict[str, Any]
    """The owner reference of the Tenant (``kopf.build_owner_reference``)."""
    rotate: bool = False
    fresh: bool = False
    """No Secret is expected (the Tenant was never provisioned): the create-only write
    goes first, without the read that would find nothing; a Secret found there after
    all (409) is read and used as always."""
    complete: Callable[[str], dict[str, str]] | None = field(default=None, repr=False)
    """Every key of the Secret for a new password, when they are known before
    provisioning: stored with it, so that completing the Secret costs no second write."""
    data: dict[str, str] = field(default_factory=dict, repr=False)
    """What the Secret holds after the call."""
    version: str | None = None
    """The Secret's ``resourceVersion`` after the call: a later write is made at it."""
    written: bool = False
    """Whether this call stored a new password."""

    def __call__(self) -> str:
        if self.fresh and not self.rotate:
            stored = self._store(None)
            if stored is not None:
                return stored
        name = secret_name(self.tenant)
        raw = kube.read_secret(self.namespace, name)
        data = _owned_data(raw, self.tenant, self.owner["uid"])
        if data.get("password") and not self.rotate:
            return self._keep(raw, data)
        stored = self._store(raw)
        if stored is None:  # another process stored one first: that one it is
            raw = kube.read_secret(self.namespace, name)
            data = _owned_data(raw, self.tenant, self.owner["uid"])
            if not data.get("password"):
                raise SecretConflict(f"Secret {name!r} changed while its password was stored")
            return self._keep(raw, data)
        return stored

    def _store(self, raw: dict[str, Any] | None) -> str | None:
        """A new password, stored with a create-only write (``raw`` None: no Secret was
        read) or at the version read; None if another write came first."""
        candidate = passwords.generate()
        data = self.complete(candidate) if self.complete else {"password": candidate}
        body = _body(self.namespace, self.tenant, self.owner, data)
        if raw is None:
            version = kube.create_secret_once(self.namespace, body)
        else:
            version = kube.patch_secret_at(self.namespace, body, raw["metadata"]["resourceVersion"])
        if version is None:
            return None
        self.data, self.version, self.written = data, version, True
        return candidate

    def _keep(self, raw: dict[str, Any] | None, data: dict[str, str]) -> str:
        self.data = data
        self.version = str((raw or {}).get("metadata", {}).get("resourceVersion") or "") or None
        return data["password"]


def write(stored: StoredPassword, credentials: Credentials) -> bool:
    """Complete the Secret with every key, at the version ``stored`` read or wrote.

    ``False`` if it holds them already. A Secret changed since (another process
    rotated it) fails with a 409, so a stale password is never written back.
    """
    wanted = credentials.as_data()
    if stored.data == wanted:
        return False
    if stored.version is None:
        raise SecretConflict(f"Secret {secret_name(stored.tenant)!r} has no password stored")
    body = _body(stored.namespace, stored.tenant, stored.owner, wanted)
    if kube.patch_secret_at(stored.namespace, body, stored.version) is None:
        raise kube.ApiError(status=409, reason="Secret changed since it was read; retrying")
    return True


def _owned_data(raw: dict[str, Any] | None, tenant: str, owner_uid: str) -> dict[str, str]:
    if raw is None:
        return {}
    owners = raw.get("metadata", {}).get("ownerReferences") or []
    if not any(ref.get("uid") == owner_uid for ref in owners):
        raise SecretConflict(
            f"Secret {secret_name(tenant)!r} exists and is not owned by this Tenant; "
            "rename or delete it"
        )
    return {str(k): str(v) for k, v in (raw.get("data") or {}).items()}


def _body(
    namespace: str, tenant: str, owner: dict[str, Any], data: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(tenant),
            "namespace": namespace,
            "labels": {**MANAGED_BY, "tenantdb.io/tenant": tenant},
            "ownerReferences": [owner],
        },
        "stringData": data,
    }
