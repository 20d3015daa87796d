"""A status patch carries only what changes."""

import kopf

from tenantdb.controllers import reporting


def test_unchanged_fields_are_left_out_and_an_empty_status_is_no_patch() -> None:
    status = {"phase": "Ready", "version": 2, "conditions": [{"type": "Ready", "status": "True"}]}
    patch = kopf.Patch()
    patch.status["phase"] = "Ready"
    patch.status["conditions"] = [{"type": "Ready", "status": "True"}]
    patch.status["seeded"] = None  # absent already
    reporting.drop_unchanged(patch, status)
    assert not patch


def test_changed_and_cleared_fields_stay() -> None:
    patch = kopf.Patch()
    patch.status["phase"] = "Failed"
    patch.status["version"] = None
    patch.status["schema"] = "t_a"
    reporting.drop_unchanged(patch, {"phase": "Ready", "version": 2, "schema": "t_a"})
    assert patch == {"status": {"phase": "Failed", "version": None}}
