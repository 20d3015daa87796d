"""An OCI image archive of one static binary, written with the standard library.

Owns: the pod sandbox ("pause") image of the local node, which needs no base
and no build tool: one uncompressed layer holding the binary, an image config
running it, and the index containerd reads the image's name from.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

_MEDIA = "application/vnd.oci.image"


def write_binary_image(binary: Path, name: str, archive: Path) -> None:
    """Write ``archive``: an image called ``name`` whose entrypoint is ``/<binary name>``."""
    layer = _layer(binary)
    entrypoint = f"/{binary.name}"
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [entrypoint], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": f"{_MEDIA}.manifest.v1+json",
            "config": _descriptor(f"{_MEDIA}.config.v1+json", config),
            "layers": [_descriptor(f"{_MEDIA}.layer.v1.tar", layer)],
        }
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor(f"{_MEDIA}.manifest.v1+json", manifest),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rpartition(":")[2],
                },
            }
        ],
    }
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": _json(index),
        **{f"blobs/sha256/{_hex(blob)}": blob for blob in (layer, config, manifest)},
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(_tar(files, executable=set()))


def _layer(binary: Path) -> bytes:
    """A layer with the binary at the root, owned by root and executable."""
    return _tar({binary.name: binary.read_bytes()}, executable={binary.name})


def _tar(files: dict[str, bytes], *, executable: set[str]) -> bytes:
    """An uncompressed tar of ``files``, byte-for-byte the same for the same input."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o755 if path in executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _json(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _digest(blob: bytes) -> str:
    return f"sha256:{_hex(blob)}"


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}
