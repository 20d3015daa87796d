"""The Secret holding a tenant's connection credentials.

Its name is fixed by the Tenant's name; it is owned by the Tenant (so the
garbage collector removes it with the Tenant) and refused if someone else's
Secret already has that name. Passwords never leave this module except
into the Secret and into ``core`` (as a SCRAM verifier).
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tenantdb.controllers import kube

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


def existing_password(namespace: str, tenant: str, owner_uid: str) -> str | None:
    """The password stored for this Tenant, if its Secret exists."""
    return existing(namespace, tenant, owner_uid).get("password")


def existing(namespace: str, tenant: str, owner_uid: str) -> dict[str, str]:
    """What this Tenant's Secret holds (empty if there is none yet)."""
    secret = kube.read_secret(namespace, secret_name(tenant))
    if secret is None:
        return {}
    owners = secret.get("metadata", {}).get("ownerReferences") or []
    if not any(ref.get("uid") == owner_uid for ref in owners):
        raise SecretConflict(
            f"Secret {secret_name(tenant)!r} exists and is not owned by this Tenant; "
            "rename or delete it"
        )
    return {str(k): str(v) for k, v in (secret.get("data") or {}).items()}


def write(namespace: str, tenant: str, owner: dict[str, Any], credentials: Credentials) -> None:
    """Create or update the Secret, owned by the Tenant."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(tenant),
            "namespace": namespace,
            "labels": {**MANAGED_BY, "tenantdb.io/tenant": tenant},
            "ownerReferences": [owner],
        },
        "stringData": credentials.as_data(),
    }
    kube.apply_secret(namespace, body)
