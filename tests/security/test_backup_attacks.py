"""Backups and restores attacked by a namespace user through the API server, and by a tenant.

User A (namespace A: tenants ``atk`` and its own; may create Backups,
BackupSchedules, Tenants and Secrets there) goes after namespace B's tenant
``vic`` and its archives: names resolve in one namespace only, a volume
path stays under the operator's allowed directories and below it every
archive is ``<namespace>/<tenant>/<time>-<backup uid>``, S3 keys a user
names are the only keys used, and the final Backup of ``BackupThenDelete``
must be the operator's own. Afterwards nothing secret is in the
operator's log, the Backups' status or their events.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantdb.core import errors, naming
from tenantdb.core.backups import s3
from tenantdb.devenv import operator_process
from tests.conftest import S3Server
from tests.e2e.support import eventually
from tests.security import rbac
from tests.security.conftest import Boundary

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

MASTER_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
"""The attacker's master key: it must never appear in the operator's log."""


def _backup(user: rbac.NamespaceUser, name: str, tenant: str, **spec: Any) -> None:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"tenant": tenant, **spec},
    }
    user.kubectl.apply(json.dumps(body))


def _finished(user: rbac.NamespaceUser, name: str, timeout: float = 120) -> dict[str, Any]:
    """The Backup's status once Completed or Failed."""
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(user.kubectl.get("backup", name).get("status") or {})
        return found.get("phase") in ("Completed", "Failed")

    eventually(done, timeout=timeout)
    return found


def _ready(status: dict[str, Any]) -> dict[str, str]:
    return next(c for c in status.get("conditions") or [] if c["type"] == "Ready")


def _secret(user: rbac.NamespaceUser, name: str, **data: str) -> None:
    literals = [f"--from-literal={key}={value}" for key, value in data.items()]
    user.kubectl.run("create", "secret", "generic", name, *literals)


def _victim_archive(boundary: Boundary) -> tuple[str, Path]:
    """A Completed archive of B's tenant ``vic``, taken with B's own token: name, directory."""
    name = f"vic-{uuid.uuid4().hex[:6]}"
    _backup(boundary.b, name, "vic")
    status = _finished(boundary.b, name)
    assert status["phase"] == "Completed", status
    return name, Path(str(status["location"]))


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_a_backup_of_the_other_namespaces_tenant_finds_no_such_tenant(boundary: Boundary) -> None:
    _backup(boundary.a, "steal-vic", "vic")
    status = _finished(boundary.a, "steal-vic")
    assert status["phase"] == "Failed" and _ready(status)["reason"] == "TenantNotFound", status
    assert "sha256" not in status and "tenantUid" not in status


def test_a_restore_from_the_other_namespaces_backup_name_finds_nothing(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    victim_backup, _ = _victim_archive(boundary)
    boundary.a.kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: thief\n"
        f"spec:\n  isolation: schema\n  plan: free\n  restoreFrom:\n    backup: {victim_backup}\n"
    )

    def waiting() -> bool:
        status = boundary.a.kubectl.get("tenant", "thief").get("status") or {}
        messages = [str(c.get("message")) for c in status.get("conditions") or []]
        return any(f"does not exist in namespace {boundary.a.namespace}" in m for m in messages)

    eventually(waiting, timeout=60)
    status = boundary.a.kubectl.get("tenant", "thief")["status"]
    assert "restored" not in status
    schema = status.get("schema")
    if schema:
        assert not admin.execute(
            "SELECT 1 FROM pg_class WHERE relnamespace = %s::regnamespace AND relname = 'notes'",
            (schema,),
        ).fetchall()
    denied = boundary.a.elsewhere(boundary.b.namespace).run(
        "get", "backup", victim_backup, check=False
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    boundary.a.kubectl.run("delete", "tenant", "thief", "--wait=false")


def test_a_volume_path_inside_the_other_namespaces_directory_reads_and_removes_nothing_of_it(
    boundary: Boundary, backup_root: Path
) -> None:
    """Any directory under the allowed root may be named, the other namespace's too; the
    operator still writes only ``<it>/<namespace A>/atk/<time>-<uid>`` and deleting the
    Backup removes only that."""
    _, victim = _victim_archive(boundary)
    before = _files(victim)
    inside = victim.parent  # .../<namespace B>/vic
    _backup(boundary.a, "squat", "atk", storage={"volume": {"path": str(inside)}})
    status = _finished(boundary.a, "squat")
    assert status["phase"] == "Completed", status
    ours = Path(str(status["location"]))
    assert ours.is_relative_to(inside / boundary.a.namespace / "atk"), ours
    assert _files(victim) == before
    boundary.a.kubectl.run("delete", "backup", "squat", "--wait=true", "--timeout=60s")
    assert not ours.exists()
    assert _files(victim) == before


@pytest.mark.parametrize(
    "path",
    [
        "{root}/../escaped",
        "{root}/{b}/../../escaped",
        "/etc",
        "{root}-sibling",
    ],
)
def test_a_volume_path_that_leaves_the_allowed_directory_is_refused(
    boundary: Boundary, backup_root: Path, path: str
) -> None:
    name = f"out-{uuid.uuid4().hex[:6]}"
    wanted = path.format(root=backup_root, b=boundary.b.namespace)
    _backup(boundary.a, name, "atk", storage={"volume": {"path": wanted}})
    status = _finished(boundary.a, name)
    assert status["phase"] == "Failed" and _ready(status)["reason"] == "InvalidSpec", status
    assert not (backup_root.parent / "escaped").exists()
    assert not Path(f"{backup_root}-sibling").exists()


def test_the_other_namespaces_encryption_key_secret_cannot_be_named(boundary: Boundary) -> None:
    """Secrets resolve in the Backup's namespace: B's master key Secret is not found in A."""
    _secret(boundary.b, "b-master", key=base64.b64encode(secrets.token_bytes(32)).decode())
    encryption = {"keySecret": {"name": "b-master", "key": "key"}}
    _backup(boundary.a, "borrow-key", "atk", encryption=encryption)
    status = _finished(boundary.a, "borrow-key")
    assert status["phase"] == "Failed" and _ready(status)["reason"] == "InvalidSpec", status
    assert boundary.a.namespace in _ready(status)["message"]


def test_an_s3_secret_with_empty_keys_is_refused_before_any_request(boundary: Boundary) -> None:
    """Empty keys would make boto3 fall back to the operator's own credentials."""
    _secret(boundary.a, "empty-s3", accessKeyId="", secretAccessKey="")
    bucket = {"bucket": "operators-bucket", "credentials": {"name": "empty-s3"}}
    _backup(boundary.a, "borrow-creds", "atk", storage={"s3": bucket})
    status = _finished(boundary.a, "borrow-creds")
    assert status["phase"] == "Failed" and _ready(status)["reason"] == "InvalidSpec", status
    assert "non-empty" in _ready(status)["message"]


def test_empty_s3_keys_never_sign_with_the_default_chain(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core half of the same attack: with the operator's real keys in its environment,
    a storage given empty keys is refused by the server, never signed with them."""
    endpoint = s3_server.endpoint
    bucket = s3_server.new_bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_access_key)
    place: dict[str, Any] = {"bucket": bucket, "endpoint": endpoint.url, "region": endpoint.region}
    own = s3.S3Storage(**place, path_style=True)
    with own.writer("a/b/data") as sink:  # control: the environment's keys do work
        sink.write(b"x")
    empty = s3.S3Storage(**place, path_style=True, access_key_id="", secret_access_key="")
    with pytest.raises(errors.StorageError):
        empty.keys("a")
    with pytest.raises(errors.StorageError):
        empty.delete("a")
    assert own.keys("a") == ["a/b/data"]


def test_a_planted_final_backup_never_lets_the_data_go(
    boundary: Boundary, admin: psycopg.Connection
) -> None:
    """User A creates, before deleting its ``BackupThenDelete`` tenant, a Backup of another
    tenant under the final Backup's predictable name: the finalizer takes the next name,
    and the tenant's data goes only once a Backup of *its* UID is Completed."""
    user = boundary.a
    user.kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: fin\n"
        "spec:\n  isolation: schema\n  plan: free\n  deletionPolicy: BackupThenDelete\n"
    )
    user.kubectl.wait("tenant/fin", "condition=Ready", timeout=120)
    uid = user.kubectl.get("tenant", "fin")["metadata"]["uid"]
    planted = f"fin-final-{naming.uid_hash(uid)[:6]}-1"
    _backup(user, planted, "atk", dataPolicy="Delete")
    assert _finished(user, planted)["phase"] == "Completed"
    user.kubectl.run("delete", "tenant", "fin", "--wait=true", "--timeout=180s")
    genuine = user.kubectl.get("backup", f"fin-final-{naming.uid_hash(uid)[:6]}-2")
    assert genuine["status"]["phase"] == "Completed" and genuine["status"]["tenantUid"] == uid
    assert user.kubectl.get("backup", planted)["spec"]["tenant"] == "atk"  # left alone


def test_a_tenant_locking_its_own_tables_fails_only_its_own_backup(boundary: Boundary) -> None:
    """``atk``'s application holds ACCESS EXCLUSIVE on its table: its backup gives up
    (TenantBusy) within the lock wait, while ``vic``'s is taken meanwhile."""
    attacker = boundary.current("atk")
    with psycopg.connect(attacker.secret["uri"]) as conn:
        conn.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        _backup(boundary.a, "locked", "atk")
        _victim_archive(boundary)
        status = _finished(boundary.a, "locked")
        conn.rollback()
    assert status["phase"] == "Failed" and _ready(status)["reason"] == "Busy", status


def test_no_secret_reaches_the_operators_log_or_a_backups_status_and_events(
    boundary: Boundary, operator: operator_process.OperatorProcess
) -> None:
    """After the attacks above (and an encrypted backup of A's own): no password, master
    key, wrapped tenant key or S3 key in the log, the status or the events."""
    _secret(boundary.a, "a-master", key=MASTER_KEY)
    _secret(boundary.a, "a-s3", accessKeyId="AKIAFORGED", secretAccessKey="s3-secret-forged")
    encryption = {"keySecret": {"name": "a-master", "key": "key"}}
    _backup(boundary.a, "sealed", "atk", encryption=encryption)
    assert _finished(boundary.a, "sealed")["phase"] == "Completed"
    bucket = {"bucket": "no-such-bucket", "endpoint": "http://127.0.0.1:9", "pathStyle": True}
    _backup(boundary.a, "creds", "atk", storage={"s3": {**bucket, "credentials": {"name": "a-s3"}}})
    _finished(boundary.a, "creds", timeout=400)
    wrapped = boundary.a.kubectl.secret_data(
        f"atk-backup-key-{naming.uid_hash(boundary.tenant('atk').uid)}"
    )["wrappedKey"]
    secret_values = [
        MASTER_KEY,
        wrapped,
        "s3-secret-forged",
        boundary.current("atk").secret["password"],
        boundary.current("vic").secret["password"],
    ]
    seen = [operator.log_path.read_text()]
    for name in ("sealed", "creds"):
        seen.append(json.dumps(boundary.a.kubectl.get("backup", name)))
        seen.append(json.dumps(boundary.a.kubectl.events(name)))
    for text in seen:
        for value in secret_values:
            assert value not in text
