"""What the Tenant controller refuses, and which deletion policy it carries out."""

import pytest

from tenantdb.api import tenants as api
from tenantdb.controllers import tenants


def test_fields_without_their_feature_are_named() -> None:
    spec = api.TenantSpec.model_validate(
        {"serverRef": {"name": "replica"}, "restoreFrom": {"backup": "nightly"}}
    )
    found = api.unsupported(spec)
    assert [f.split(":")[0] for f in found] == ["spec.serverRef"]
    assert api.unsupported(api.TenantSpec()) == []


@pytest.mark.parametrize(
    ("spec", "policy", "retained"),
    [
        ({"deletionPolicy": "Delete"}, api.DeletionPolicy.DELETE, False),
        ({}, api.DeletionPolicy.RETAIN, False),
        ({"deletionPolicy": "BackupThenDelete"}, api.DeletionPolicy.BACKUP_THEN_DELETE, False),
        ({"isolation": "tablespace"}, api.DeletionPolicy.RETAIN, True),
    ],
)
def test_deleting_never_waits_for_what_cannot_happen(
    spec: dict[str, str], policy: api.DeletionPolicy, retained: bool
) -> None:
    carried_out, note = tenants.deletion_policy(spec)
    assert carried_out is policy
    assert note.startswith("data retained") is retained
