"""Which deletion policy the Tenant controller carries out."""

import pytest

from tenantdb.api import tenants as api
from tenantdb.controllers import tenants


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
