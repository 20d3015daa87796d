"""A storage named by URL: ``file:///directory`` or ``s3://bucket/prefix``.

The operator's default storage (``TENANTDB_BACKUP_STORAGE``) and the CLI's
``--storage`` are URLs; the S3 settings and credentials come from the
operator's own ``BackupSettings``.
"""

from pathlib import Path
from urllib.parse import urlsplit

from tenantdb.core.backups import s3, storage
from tenantdb.settings import BackupSettings


def open_url(url: str, settings: BackupSettings) -> storage.Storage:
    """The storage ``url`` names; ``ValueError`` for any other scheme."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return storage.VolumeStorage(Path(parts.path))
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r}: a backup storage is file:///<directory> or s3://<bucket>/")
    return s3.S3Storage(
        bucket=parts.netloc,
        prefix=parts.path.strip("/"),
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        path_style=settings.s3_path_style,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
