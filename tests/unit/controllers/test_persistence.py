"""kopf's diff base stays small whatever the spec, and still sees every change."""

import json

import kopf

from tenantdb.controllers import persistence


def essence(metadata: dict[str, str], annotations: dict[str, str]) -> dict[str, object]:
    return {
        "spec": {"isolation": "schema", "plan": "free", "metadata": metadata},
        "metadata": {"labels": {"tier": "gold"}, "annotations": annotations},
    }


def size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def test_small_values_are_kept_as_they_are() -> None:
    small = essence({"region": "eu"}, {"note": "hi"})
    assert persistence.compact(small) == small


def test_large_values_become_digests_and_changes_still_show() -> None:
    big = {f"k{i:02d}": "v" * 256 for i in range(64)}
    blob = {"example.com/blob": "x" * 200_000}
    compacted = persistence.compact(essence(big, blob))
    assert size(compacted) < persistence.TOTAL_LIMIT < size(essence(big, blob)) // 10
    assert compacted["spec"]["plan"] == "free"  # type: ignore[index]
    assert compacted["metadata"]["labels"] == {"tier": "gold"}  # type: ignore[index]
    changed = persistence.compact(essence({**big, "k00": "w" * 256}, blob))
    assert changed != compacted
    assert persistence.compact(essence(dict(big), dict(blob))) == compacted


def test_many_medium_annotations_are_kept_as_one_digest() -> None:
    many = {f"example.com/a{i}": "x" * 400 for i in range(500)}
    compacted = persistence.compact(essence({}, many))
    assert size(compacted) < persistence.TOTAL_LIMIT
    assert compacted["spec"]["isolation"] == "schema"  # type: ignore[index]


def tenant(
    status: dict[str, object] | None = None, annotations: dict[str, str] | None = None
) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "t", "annotations": annotations or {}},
            "spec": {"plan": "free"},
            "status": status or {},
        }
    )


DIFF_BASE = persistence.CompactDiffBaseStorage(
    prefix="operator.tenantdb.io", key="last-handled-configuration"
)
PROGRESS = persistence.BoundedProgressStorage(prefix="operator.tenantdb.io")
LEGACY = "operator.tenantdb.io/last-handled-configuration"


def test_a_tenants_diff_base_goes_into_status_with_no_metadata_patch() -> None:
    body = tenant()
    patch = kopf.Patch()
    DIFF_BASE.store(body=body, patch=patch, essence=DIFF_BASE.build(body=body))
    assert set(patch) == {"status"}
    stored = tenant({"operator": dict(patch["status"]["operator"])})
    assert DIFF_BASE.fetch(body=stored) == DIFF_BASE.build(body=body)


def test_a_diff_base_left_in_an_annotation_is_read_then_moved() -> None:
    essence = {"spec": {"plan": "free"}}
    body = tenant(annotations={LEGACY: json.dumps(essence)})
    assert DIFF_BASE.fetch(body=body) == essence
    patch = kopf.Patch()
    DIFF_BASE.store(body=body, patch=patch, essence=DIFF_BASE.build(body=body))
    assert patch["metadata"]["annotations"] == {LEGACY: None}
    assert "lastHandledConfiguration" in patch["status"]["operator"]


def test_a_handler_that_succeeds_at_once_leaves_no_progress_to_write() -> None:
    body = tenant()
    patch = kopf.Patch()
    record = {"started": "2026-01-01T00:00:00", "success": True, "retries": 1}
    PROGRESS.store(key="reconcile", record=record, body=body, patch=patch)  # type: ignore[arg-type]
    assert json.loads(patch["status"]["operator"]["progress"]["reconcile"])["retries"] == 1
    PROGRESS.purge(key="reconcile", body=body, patch=patch)
    assert not patch


def test_progress_in_status_is_read_and_purged_there() -> None:
    record = {"retries": 2, "message": "m" * 5000}
    patch = kopf.Patch()
    PROGRESS.store(key="reconcile", record=record, body=tenant(), patch=patch)  # type: ignore[arg-type]
    body = tenant({"operator": dict(patch["status"]["operator"])})
    fetched = PROGRESS.fetch(key="reconcile", body=body)
    assert fetched is not None and len(fetched["message"] or "") == persistence.MESSAGE_LIMIT
    purge = kopf.Patch()
    PROGRESS.purge(key="reconcile", body=body, patch=purge)
    assert purge == {"status": {"operator": {"progress": {"reconcile": None}}}}


def test_other_kinds_keep_their_bookkeeping_in_annotations() -> None:
    body = kopf.Body({"kind": "Backup", "metadata": {"name": "b"}, "spec": {}})
    patch = kopf.Patch()
    DIFF_BASE.store(body=body, patch=patch, essence=DIFF_BASE.build(body=body))
    assert set(patch) == {"metadata"}
