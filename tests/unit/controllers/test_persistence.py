"""kopf's diff base stays small whatever the spec, and still sees every change."""

import json

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
