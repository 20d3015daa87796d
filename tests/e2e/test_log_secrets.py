"""No secret reaches the operator's log, whatever the operator did.

The e2e path in one namespace: a tenant of each isolation mode, a Migration,
an encrypted Backup to S3 under a key pair from a Secret, a password
rotation. Then the operator's whole log (every test of the session so far
included) is searched for each secret the operator held meanwhile.
"""

from __future__ import annotations

import base64
import os
import secrets

import psycopg
import pytest

from tenantdb.core import naming
from tenantdb.devenv import operator_process
from tests.conftest import S3Server
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import tenant
from tests.e2e.test_backups import backup, wait_backup
from tests.e2e.test_migrations_rollout import migration, wait_phase

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

MODES = ("schema", "database", "shared")


def test_no_password_key_or_token_is_ever_logged(
    kubectl: Kubectl,
    operator: operator_process.OperatorProcess,
    operator_url: str,
    s3_server: S3Server,
) -> None:
    for mode in MODES:
        kubectl.apply(tenant(f"leak-{mode}", isolation=mode))
    for mode in MODES:
        kubectl.wait(f"tenant/leak-{mode}", "condition=Ready", timeout=120)
    before = {mode: kubectl.secret_data(f"leak-{mode}-credentials") for mode in MODES}

    kubectl.apply(migration("leak-m1", 1, "CREATE TABLE notes (id bigint PRIMARY KEY)"))
    assert wait_phase(kubectl, "leak-m1", "Succeeded")["phase"] == "Succeeded"

    master = base64.b64encode(secrets.token_bytes(32)).decode()
    kubectl.run("create", "secret", "generic", "leak-master", f"--from-literal=key={master}")
    endpoint = s3_server.endpoint
    kubectl.run(
        "create",
        "secret",
        "generic",
        "leak-s3",
        f"--from-literal=accessKeyId={endpoint.access_key_id}",
        f"--from-literal=secretAccessKey={endpoint.secret_access_key}",
    )
    storage = {
        "s3": {
            "bucket": s3_server.new_bucket(),
            "endpoint": endpoint.url,
            "pathStyle": True,
            "credentials": {"name": "leak-s3"},
        }
    }
    encryption = {"keySecret": {"name": "leak-master", "key": "key"}}
    kubectl.apply(backup("leak-b1", "leak-schema", storage=storage, encryption=encryption))
    wait_backup(kubectl, "leak-b1")
    uid = kubectl.get("tenant", "leak-schema")["metadata"]["uid"]
    wrapped = kubectl.secret_data(f"leak-schema-backup-key-{naming.uid_hash(uid)}")["wrappedKey"]

    kubectl.run("annotate", "tenant", "leak-schema", "tenantdb.io/rotate-credentials=leak-1")
    kubectl.wait("tenant/leak-schema", "jsonpath={.status.credentialsRotation}=leak-1")
    rotated = kubectl.secret_data("leak-schema-credentials")
    assert rotated["password"] != before["schema"]["password"]

    held = {
        "database URL password": psycopg.conninfo.conninfo_to_dict(operator_url)["password"],
        "credentials key": os.environ["TENANTDB_CREDENTIALS_KEY"],
        "S3 secret key": endpoint.secret_access_key,
        "master key": master,
        "wrapped key": wrapped,
        "rotated password": rotated["password"],
    }
    for mode, data in before.items():
        held[f"{mode} password"] = data["password"]
        if "tenantToken" in data:
            held[f"{mode} tenantToken"] = data["tenantToken"]
    assert "shared tenantToken" in held and all(held.values())
    log = operator.log_path.read_text()
    assert f"[{kubectl.namespace}/leak-schema]" in log  # the log is the operator's, and names
    leaked = [what for what, value in held.items() if str(value) in log]
    assert not leaked, f"in the operator's log: {leaked}"
