"""Where a Backup's archive lives and which keys open it, from its spec and Secrets.

The one place that turns ``spec.storage`` (or the operator's default storage)
and ``spec.encryption`` into the core's storage and key objects. Secrets are
read here and handed down as bytes; they never reach status, events or logs.
"""

import base64
import binascii
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from tenantdb import settings as settings_
from tenantdb.api import backups as api
from tenantdb.controllers import kube
from tenantdb.core import errors, naming
from tenantdb.core.backups import encryption as sealing
from tenantdb.core.backups import s3, storage, urls

KEY_SECRET_FIELD = "wrappedKey"  # noqa: S105 - a key name, not a secret
"""Data key of a tenant's backup-key Secret: the tenant key wrapped by the master key."""


class BackupConfigError(errors.TenantDBError):
    """The Backup's spec or the Secrets it names cannot be used."""

    reason = "InvalidSpec"


@dataclass(frozen=True)
class Destination:
    """An archive's storage and its location (a key prefix) there."""

    storage: storage.Storage
    location: str
    url: str
    """For humans: ``s3://bucket/prefix/...`` or the directory."""


@dataclass(frozen=True)
class Keys:
    """What encrypts or opens a tenant's archives."""

    tenant_key: bytes = field(repr=False)
    key_id: str
    """Names the tenant key (its Secret), recorded in the archive."""


def location(namespace: str, tenant: str, created: str, backup_uid: str) -> str:
    """``<namespace>/<tenant>/<timestamp>-<backup uid>``: stable across restarts of a backup."""
    started = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return storage.archive_location(namespace, tenant, started, backup_uid)


def destination(
    settings: settings_.BackupSettings,
    namespace: str,
    wanted: api.BackupStorage | None,
    prefix: str,
) -> Destination:
    """The storage the spec names, or the operator's default, at ``prefix``.

    What a namespace user may name is bounded: a volume directory only under the
    operator's allowed roots, and an S3 bucket only with credentials of their own
    (the operator's own credentials serve its default storage alone)."""
    if wanted is not None and wanted.volume is not None:
        return _volume(_allowed(settings, wanted.volume.path), prefix)
    if wanted is not None and wanted.s3 is not None:
        if wanted.s3.credentials is None:
            raise BackupConfigError(
                "spec.storage.s3.credentials is required: the operator's own credentials "
                "serve only its default storage"
            )
        return _s3_from_spec(namespace, wanted.s3, prefix)
    if settings.storage is None:
        raise BackupConfigError(
            "spec.storage is unset and the operator has no default storage "
            "(TENANTDB_BACKUP_STORAGE)"
        )
    if settings.storage.startswith("file://"):
        return _volume(urlsplit(settings.storage).path, prefix)
    parts = urlsplit(settings.storage)
    default = urls.open_url(settings.storage, settings)
    return Destination(default, prefix, _s3_url(parts.netloc, parts.path, prefix))


def _allowed(settings: settings_.BackupSettings, path: str) -> str:
    """``path`` if it is one of the allowed volume roots or lies under one."""
    wanted = Path(os.path.normpath(path))
    roots = settings.allowed_volume_roots()
    if not any(wanted == root or root in wanted.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots) or "none (TENANTDB_BACKUP_VOLUME_ROOTS)"
        raise BackupConfigError(
            f"spec.storage.volume.path {path!r} is not under an allowed backup directory: {allowed}"
        )
    return str(wanted)


def _volume(path: str, prefix: str) -> Destination:
    return Destination(storage.VolumeStorage(Path(path)), prefix, f"{path.rstrip('/')}/{prefix}/")


def _s3_url(bucket: str, prefix: str, location: str) -> str:
    inside = "/".join(part for part in (prefix.strip("/"), location) if part)
    return f"s3://{bucket}/{inside}/"


def _s3_from_spec(namespace: str, spec: api.S3Storage, prefix: str) -> Destination:
    access_key_id = secret_access_key = None
    if spec.credentials is not None:
        data = _secret_data(namespace, spec.credentials.name)
        access_key_id = _secret_value(
            data, spec.credentials.name, spec.credentials.access_key_id_key
        )
        secret_access_key = _secret_value(
            data, spec.credentials.name, spec.credentials.secret_access_key_key
        )
    bucket = s3.S3Storage(
        bucket=spec.bucket,
        prefix=spec.prefix.strip("/"),
        endpoint=spec.endpoint,
        region=spec.region,
        path_style=spec.path_style,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
    )
    return Destination(bucket, prefix, _s3_url(spec.bucket, spec.prefix, prefix))


def key_secret_name(tenant: str, tenant_uid: str) -> str:
    """The Secret keeping a tenant's backup key: deleting it makes its archives unreadable.

    Named after the tenant's UID too, so a later tenant of the same name gets
    its own key; not owned by the Tenant, so it outlives it (its backups stay
    readable until the key is deleted on purpose).
    """
    return f"{tenant}-backup-key-{naming.uid_hash(tenant_uid)}"


def keys(
    namespace: str,
    encryption: api.Encryption | None,
    tenant: str,
    tenant_uid: str,
    create: bool,
) -> Keys | None:
    """The tenant's backup key, made (and kept in its Secret) on first use if ``create``."""
    if encryption is None:
        return None
    ref = encryption.key_secret
    master = _master_key(_secret_value(_secret_data(namespace, ref.name), ref.name, ref.key))
    name = key_secret_name(tenant, tenant_uid)
    stored = kube.read_secret(namespace, name)
    if stored is None and create:
        wrapped = sealing.new_tenant_key(master, tenant_uid)
        kube.create_secret(namespace, _key_secret(name, tenant, tenant_uid, wrapped))
        stored = kube.read_secret(namespace, name)
    if stored is None:
        raise errors.EncryptionKeyMissing(
            f"the backup key Secret {name!r} of tenant {tenant} is gone: its archives cannot be "
            "decrypted (crypto-shredded)"
        )
    try:
        wrapped = base64.b64decode(stored["data"][KEY_SECRET_FIELD])
    except (KeyError, binascii.Error) as exc:
        raise BackupConfigError(f"Secret {name!r} has no valid {KEY_SECRET_FIELD}") from exc
    return Keys(sealing.unwrap_tenant_key(master, wrapped, tenant_uid), key_id=name)


def _key_secret(name: str, tenant: str, tenant_uid: str, wrapped: bytes) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "tenantdb", "tenantdb.io/tenant": tenant},
            "annotations": {"tenantdb.io/tenant-uid": tenant_uid},
        },
        "type": "Opaque",
        "stringData": {KEY_SECRET_FIELD: base64.b64encode(wrapped).decode()},
    }


def _master_key(raw: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise BackupConfigError("the encryption key is not base64") from exc
    if len(key) != 32:
        raise BackupConfigError(f"the encryption key is {len(key)} bytes, not 32")
    return key


def _secret_data(namespace: str, name: str) -> dict[str, str]:
    secret = kube.read_secret(namespace, name)
    if secret is None:
        raise BackupConfigError(f"Secret {name!r} does not exist in namespace {namespace}")
    return dict(secret.get("data") or {})


def _secret_value(data: dict[str, str], name: str, key: str) -> str:
    """A Secret's value: present and not blank (an empty S3 key would otherwise mean
    "use the default chain", the operator's own identity)."""
    if not data.get(key, "").strip():
        raise BackupConfigError(f"Secret {name!r} has no (non-empty) key {key!r}")
    return data[key]
