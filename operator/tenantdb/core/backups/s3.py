"""Archives in an S3 bucket (AWS or any S3-compatible service), streamed with boto3.

Owns: ``S3Storage`` (the ``storage.Storage`` protocol over one bucket and
prefix), multipart uploads with one bounded part buffer that are completed
on a clean exit and aborted otherwise, and the translation of botocore's
errors into ``core.errors`` storage classes. Never puts credentials or a
server's error document into a message or a repr.

boto3 is imported when a bucket is first used, not with this module: it costs
the operator about 7 MB of memory, for good, even where no backup goes to S3.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenantdb.core import errors
from tenantdb.core.backups import storage

if TYPE_CHECKING:
    import botocore.exceptions

PART_SIZE = 8 * storage.MIB
"""Bytes of one multipart part (S3's minimum is 5 MiB, at most 10,000 parts: 78 GiB).
A writer holds two: one on its way, one filling."""
DELETE_BATCH = 1000
"""Keys per DeleteObjects request (the S3 maximum)."""


@dataclass(frozen=True)
class S3Storage:
    """Objects in an S3 bucket under ``prefix``; large objects go up as multipart uploads.

    Without keys (both None), boto3's default chain is used (environment, web
    identity, instance profile); with keys, those alone, even empty. Building one
    does no I/O.
    """

    bucket: str
    prefix: str = ""
    """Prepended (with ``/``) to every key, so several operators can share a bucket."""
    endpoint: str | None = None
    """``https://host:port`` of an S3-compatible service; None for AWS itself."""
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    path_style: bool = False
    """``endpoint/bucket/key`` URLs instead of ``bucket.endpoint/key``: what most
    self-hosted services need when buckets have no DNS names."""
    part_size: int = PART_SIZE
    """Bytes per multipart part; a writer holds two. Raise it for archives over 78 GiB."""

    @functools.cached_property
    def _client(self) -> Any:
        import boto3  # noqa: PLC0415 - see the module's docstring
        from botocore.config import Config  # noqa: PLC0415

        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if self.path_style else "virtual"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=120,
        )
        session = boto3.session.Session(region_name=self.region)
        if self.access_key_id is None and self.secret_access_key is None:
            return session.client("s3", endpoint_url=self.endpoint, config=config)
        # Keys given (even empty ones) are the only keys: boto3's Session treats an empty
        # key as none and would sign with the default chain, the operator's own identity.
        return session.client(
            "s3",
            endpoint_url=self.endpoint,
            config=config,
            aws_access_key_id=self.access_key_id or "",
            aws_secret_access_key=self.secret_access_key or "",
        )

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[storage.Sink]:
        full_key = self._key(key)
        with _s3_errors(f"cannot start uploading {full_key} to bucket {self.bucket}"):
            response = self._client.create_multipart_upload(Bucket=self.bucket, Key=full_key)
        upload = _MultipartUpload(self, full_key, response["UploadId"])
        try:
            yield upload
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    @contextlib.contextmanager
    def reader(self, key: str) -> Iterator[storage.Source]:
        full_key = self._key(key)
        with _s3_errors(f"cannot read {full_key} from bucket {self.bucket}"):
            body = self._client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
        try:
            yield _BodySource(body, full_key)
        finally:
            body.close()

    def size(self, key: str) -> int:
        full_key = self._key(key)
        with _s3_errors(f"cannot read {full_key} from bucket {self.bucket}"):
            size: int = self._client.head_object(Bucket=self.bucket, Key=full_key)["ContentLength"]
            return size

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except errors.ArchiveNotFound:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        return sorted(self._unprefixed(key) for key in self._list(self._key(prefix) + "/"))

    def delete(self, prefix: str) -> int:
        """Delete the objects under ``prefix`` and abort its unfinished multipart uploads."""
        directory = self._key(prefix) + "/"
        doomed = list(self._list(directory))
        for start in range(0, len(doomed), DELETE_BATCH):
            batch = [{"Key": key} for key in doomed[start : start + DELETE_BATCH]]
            with _s3_errors(f"cannot delete under {directory} in bucket {self.bucket}"):
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if response.get("Errors"):
                failed = response["Errors"][0]
                raise errors.StorageDenied(
                    f"cannot delete {failed.get('Key')} in bucket {self.bucket}: {failed.get('Code')}"
                )
        self._abort_uploads(directory)
        return len(doomed)

    def _list(self, directory: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        with _s3_errors(f"cannot list {directory} in bucket {self.bucket}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=directory):
                for item in page.get("Contents", []):
                    yield item["Key"]

    def _abort_uploads(self, directory: str) -> None:
        paginator = self._client.get_paginator("list_multipart_uploads")
        with _s3_errors(f"cannot list uploads under {directory} in bucket {self.bucket}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=directory):
                for upload in page.get("Uploads", []):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

    def _key(self, key: str) -> str:
        storage.checked_key(key)
        prefix = self.prefix.strip("/")
        return f"{storage.checked_key(prefix)}/{key}" if prefix else key

    def _unprefixed(self, full_key: str) -> str:
        prefix = self.prefix.strip("/")
        return full_key[len(prefix) + 1 :] if prefix else full_key


class _MultipartUpload:
    """Sends each full part from a background thread while the next one fills.

    So compressing and encrypting overlap with the network, and memory
    stays at two parts whatever the object's size. S3 accepts a last (or
    only) part of any size, including empty.
    """

    def __init__(self, storage: S3Storage, key: str, upload_id: str) -> None:
        self._storage = storage
        self._key = key
        self._upload_id = upload_id
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._submitted = 0
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-upload")
        self._in_flight: Future[dict[str, Any]] | None = None

    def write(self, data: bytes | bytearray | memoryview, /) -> None:
        self._buffer += data
        size = self._storage.part_size
        while len(self._buffer) >= size:
            with memoryview(self._buffer) as view:
                part = bytes(view[:size])
            del self._buffer[:size]
            self._send(part)

    def complete(self) -> None:
        if self._buffer or not self._submitted:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        self._wait()
        self._sender.shutdown()
        storage = self._storage
        with _s3_errors(f"cannot complete {self._key} in bucket {storage.bucket}"):
            storage._client.complete_multipart_upload(
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    def abort(self) -> None:
        """Drop the uploaded parts; a failure here leaves them to ``delete`` or a lifecycle rule."""
        self._buffer.clear()
        with contextlib.suppress(Exception):
            self._wait()
        self._sender.shutdown()
        storage = self._storage
        with contextlib.suppress(errors.StorageError), _s3_errors("abort"):
            storage._client.abort_multipart_upload(
                Bucket=storage.bucket, Key=self._key, UploadId=self._upload_id
            )

    def _send(self, part: bytes) -> None:
        """Hand ``part`` to the sender once the previous one is through (its error is raised here)."""
        self._wait()
        self._submitted += 1
        self._in_flight = self._sender.submit(self._upload, self._submitted, part)

    def _wait(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._parts.append(future.result())

    def _upload(self, number: int, part: bytes) -> dict[str, Any]:
        storage = self._storage
        with _s3_errors(f"cannot upload part {number} of {self._key} to bucket {storage.bucket}"):
            response = storage._client.upload_part(
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
            )
        return {"ETag": response["ETag"], "PartNumber": number}


class _BodySource:
    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def read(self, size: int, /) -> bytes:
        with _s3_errors(f"cannot read {self._key}"):
            data: bytes = self._body.read(size)
            return data


_S3_DENIED = {
    "AccessDenied",
    "AccountProblem",
    "AllAccessDisabled",
    "ExpiredToken",
    "Forbidden",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidToken",
    "NoSuchBucket",
    "SignatureDoesNotMatch",
}
_S3_NOT_FOUND = {"NoSuchKey", "NotFound", "NoSuchUpload", "404"}
"""``404`` alone is what a HEAD request gets: it has no error document."""
_S3_FULL = {"EntityTooLarge", "QuotaExceeded", "InsufficientStorage", "XMinioStorageFull"}
_HTTP_DENIED = {401, 403, 404}
_HTTP_INSUFFICIENT_STORAGE = 507


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Turn botocore's errors into storage classes.

    Messages carry the error code and HTTP status only: a server's error
    document may echo the access key and the string it signed.
    """
    import botocore.exceptions  # noqa: PLC0415 - see the module's docstring

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        raise _client_error(what, exc) from exc
    except (
        botocore.exceptions.NoCredentialsError,
        botocore.exceptions.PartialCredentialsError,
    ) as exc:
        raise errors.StorageDenied(f"{what}: no usable S3 credentials") from exc
    except (
        botocore.exceptions.ConnectionError,
        botocore.exceptions.HTTPClientError,
        botocore.exceptions.IncompleteReadError,
    ) as exc:
        raise errors.StorageUnreachable(f"{what}: {type(exc).__name__}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise errors.StorageError(f"{what}: {type(exc).__name__}") from exc


def _client_error(what: str, exc: botocore.exceptions.ClientError) -> errors.StorageError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    message = f"{what}: {code or 'error'} (HTTP {status})"
    if code in _S3_NOT_FOUND:
        return errors.ArchiveNotFound(message)
    if code in _S3_DENIED or status in _HTTP_DENIED:
        # Another 404 (a missing bucket, an unknown user on some servers) refuses us too.
        return errors.StorageDenied(message)
    if code in _S3_FULL or status == _HTTP_INSUFFICIENT_STORAGE:
        return errors.StorageFull(message)
    if status >= 500 or code in {"SlowDown", "RequestTimeout", "ServiceUnavailable"}:
        return errors.StorageUnreachable(message)
    return errors.StorageError(message)
