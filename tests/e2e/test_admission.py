"""The API server itself refuses bad specs, with messages users understand.

No operator is needed: these are the CRD schemas (patterns, enums, bounds,
CEL rules) generated from the models, enforced by a real kube-apiserver.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.kubectl import Kubectl

pytestmark = pytest.mark.kube

HEADER = "apiVersion: tenantdb.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
STORAGE = "  storage:\n    volume:\n      path: /backups\n"


def manifest(kind: str, name: str, spec: str) -> str:
    return HEADER.format(kind=kind, name=name) + spec


REFUSED_ON_CREATE = {
    "serverRef with serverSelector": (
        manifest(
            "Tenant",
            "t9",
            "  serverRef:\n    name: primary\n  serverSelector:\n    matchLabels:\n      zone: a\n",
        ),
        "serverRef and serverSelector exclude each other",
    ),
    "a DatabaseServer named default": (
        manifest("DatabaseServer", "default", "  connection:\n    secretName: pg\n"),
        "'default' is the operator's own server",
    ),
    "a DatabaseServer with a negative capacity": (
        manifest(
            "DatabaseServer",
            "pg-small",
            "  connection:\n    secretName: pg\n  capacity:\n    schema: -1\n",
        ),
        "spec.capacity.schema",
    ),
    "unknown isolation": (
        manifest("Tenant", "t1", "  isolation: tablespace\n"),
        'Unsupported value: "tablespace"',
    ),
    "name with a dot": (
        manifest("Tenant", "acme.corp", "  plan: free\n"),
        "tenant names must be 1-40",
    ),
    "name over 40 characters": (
        manifest("Tenant", "a" * 41, "  plan: free\n"),
        "tenant names must be 1-40",
    ),
    "domain with spaces": (
        manifest("Tenant", "t2", "  domain: not a domain\n"),
        "spec.domain: Invalid value",
    ),
    "plan with punctuation": (
        manifest("Tenant", "t3", "  plan: Gold!\n"),
        "spec.plan: Invalid value",
    ),
    "unknown deletion policy": (
        manifest("Tenant", "t4", "  deletionPolicy: Destroy\n"),
        'Unsupported value: "Destroy"',
    ),
    "backup compression level without compression": (
        manifest("Backup", "b5", "  tenant: acme\n  compression: none\n  compressionLevel: 3\n"),
        "compressionLevel needs a compression method",
    ),
    "gzip level above 9": (
        manifest("Backup", "b6", "  tenant: acme\n  compression: gzip\n  compressionLevel: 12\n"),
        "gzip levels are 1-9",
    ),
    "backup storage naming both volume and s3": (
        manifest(
            "Backup",
            "b7",
            "  tenant: acme\n  storage:\n    volume:\n      path: /backups\n"
            "    s3:\n      bucket: tenant-backups\n",
        ),
        "set exactly one of volume and s3",
    ),
    "relative backup volume path": (
        manifest("Backup", "b8", "  tenant: acme\n  storage:\n    volume:\n      path: backups\n"),
        "spec.storage.volume.path",
    ),
    "schedule that is not cron": (
        manifest("BackupSchedule", "s1", "  tenant: acme\n  schedule: every day\n"),
        "spec.schedule",
    ),
    "empty display name": (
        manifest("Tenant", "t5", '  displayName: ""\n'),
        "spec.displayName: Invalid value",
    ),
    "non-string metadata": (
        manifest("Tenant", "t6", "  metadata:\n    tier: 3\n"),
        "must be of type string",
    ),
    "metadata value over 256 characters": (
        manifest("Tenant", "t10", f"  metadata:\n    note: {'x' * 257}\n"),
        "spec.metadata.note: Too long",
    ),
    "metadata key over 63 characters": (
        manifest("Tenant", "t11", f"  metadata:\n    {'k' * 64}: v\n"),
        "keys must be at most 63 characters",
    ),
    "more than 64 metadata entries": (
        manifest("Tenant", "t12", "  metadata:\n" + "".join(f"    k{i}: v\n" for i in range(65))),
        "must have at most 64 items",
    ),
    "a selector label value over 63 characters": (
        manifest(
            "Migration",
            "m9",
            f"  version: 9\n  up: SELECT 1\n  tenantSelector:\n    matchLabels:\n      tier: {'g' * 64}\n",
        ),
        "Too long",
    ),
    "unknown seed profile": (
        manifest("Tenant", "t7", "  seed:\n    profile: staging\n"),
        'Unsupported value: "staging"',
    ),
    "unknown spec field": (
        manifest("Tenant", "t8", "  isolaton: schema\n"),
        'unknown field "spec.isolaton"',
    ),
    "migration without up": (
        manifest("Migration", "m1", "  version: 1\n"),
        "spec.up: Required value",
    ),
    "migration without version": (
        manifest("Migration", "m2", "  up: SELECT 1\n"),
        "spec.version: Required value",
    ),
    "negative migration version": (
        manifest("Migration", "m3", "  version: -1\n  up: SELECT 1\n"),
        "should be greater than or equal to 1",
    ),
    "zero parallelism": (
        manifest(
            "Migration", "m4", "  version: 4\n  up: SELECT 1\n  strategy:\n    maxParallel: 0\n"
        ),
        "should be greater than or equal to 1",
    ),
    "unparseable lock timeout": (
        manifest("Migration", "m5", "  version: 5\n  up: SELECT 1\n  lockTimeout: 5 seconds\n"),
        "spec.lockTimeout: Invalid value",
    ),
    "statement timeout beyond PostgreSQL's limit": (
        manifest(
            "Migration", "m7", "  version: 7\n  up: SELECT 1\n  statementTimeout: 999999999h\n"
        ),
        "must be at most 2147483647ms",
    ),
    "lock timeout one second beyond PostgreSQL's limit": (
        manifest("Migration", "m8", "  version: 8\n  up: SELECT 1\n  lockTimeout: 2147484s\n"),
        "must be at most 2147483647ms",
    ),
    "unknown failure policy": (
        manifest(
            "Migration",
            "m6",
            "  version: 6\n  up: SELECT 1\n  strategy:\n    failurePolicy: Retry\n",
        ),
        'Unsupported value: "Retry"',
    ),
    "backup compression level out of bounds": (
        manifest("Backup", "b2", "  tenant: acme\n  compressionLevel: 99\n" + STORAGE),
        "should be less than or equal to 19",
    ),
    "backup of a malformed tenant name": (
        manifest("Backup", "b3", "  tenant: Acme_Corp\n" + STORAGE),
        "spec.tenant: Invalid value",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_ON_CREATE))
def test_bad_spec_is_refused_on_create(api_only: Kubectl, case: str) -> None:
    text, expected = REFUSED_ON_CREATE[case]
    result = api_only.run("apply", "-f", "-", stdin=text, check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert expected in result.stderr, result.stderr


REFUSED_ON_UPDATE = {
    "changing isolation": (
        manifest("Tenant", "u1", "  isolation: schema\n"),
        manifest("Tenant", "u1", "  isolation: shared\n"),
        "isolation is immutable",
    ),
    "changing serverRef": (
        manifest("Tenant", "u2", "  serverRef:\n    name: primary\n"),
        manifest("Tenant", "u2", "  serverRef:\n    name: replica\n"),
        "serverRef is immutable",
    ),
    "changing serverSelector": (
        manifest("Tenant", "u5", "  serverSelector:\n    matchLabels:\n      zone: a\n"),
        manifest("Tenant", "u5", "  serverSelector:\n    matchLabels:\n      zone: b\n"),
        "serverSelector is immutable",
    ),
    "changing a migration's version": (
        manifest("Migration", "u3", "  version: 7\n  up: SELECT 1\n"),
        manifest("Migration", "u3", "  version: 8\n  up: SELECT 1\n"),
        "spec.version: Invalid value",
    ),
    "changing a backup's tenant": (
        manifest("Backup", "u4", "  tenant: acme\n" + STORAGE),
        manifest("Backup", "u4", "  tenant: globex\n" + STORAGE),
        "tenant, storage, compression and encryption are immutable",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_ON_UPDATE))
def test_immutable_field_is_refused_on_update(api_only: Kubectl, case: str) -> None:
    original, changed, expected = REFUSED_ON_UPDATE[case]
    api_only.apply(original)
    result = api_only.run("apply", "-f", "-", stdin=changed, check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert expected in result.stderr, result.stderr


def test_defaults_are_applied_by_the_api_server(api_only: Kubectl) -> None:
    api_only.apply(manifest("Tenant", "defaults", "  plan: free\n"))
    spec = api_only.get("tenant", "defaults")["spec"]
    assert spec["isolation"] == "schema"
    assert spec["deletionPolicy"] == "Retain"
    assert spec["suspended"] is False


def test_timeouts_up_to_postgresqls_limit_are_accepted(api_only: Kubectl) -> None:
    """The positive control of the timeout bounds: the limit itself, in every unit."""
    for name, lock, statement in (
        ("t1", "2147483647ms", "596h"),
        ("t2", "2147483s", "35791min"),
        ("t3", "0s", "0ms"),
    ):
        spec = f"  version: 9\n  up: SELECT 1\n  lockTimeout: {lock}\n  statementTimeout: {statement}\n"
        api_only.apply(manifest("Migration", name, spec))
        assert api_only.get("migration", name)["spec"]["statementTimeout"] == statement


def test_the_example_database_server_and_its_tenant_are_accepted(api_only: Kubectl) -> None:
    documents = (
        Path(__file__).resolve().parents[2] / "examples" / "databaseserver.yaml"
    ).read_text()
    for document in yaml.safe_load_all(documents):
        if document["kind"] == "Secret":
            continue  # its namespace is the operator's, which this API server lacks
        created = api_only.run(
            "create", "--dry-run=server", "-o", "name", "-f", "-", stdin=yaml.safe_dump(document)
        )
        assert created.stdout.strip().endswith(f"/{document['metadata']['name']}")
