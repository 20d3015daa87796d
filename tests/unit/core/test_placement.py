"""Which servers have room for one more tenant (pure)."""

import pytest

from tenantdb.core import placement


@pytest.mark.parametrize(
    ("candidate", "placed", "isolation", "room"),
    [
        (placement.Candidate("a"), {"schema": 10_000}, "schema", True),
        (placement.Candidate("a", tenants=3), {"schema": 2, "database": 1}, "shared", False),
        (placement.Candidate("a", tenants=4), {"schema": 2, "database": 1}, "shared", True),
        (
            placement.Candidate("a", per_isolation={"database": 1}),
            {"database": 1},
            "database",
            False,
        ),
        (placement.Candidate("a", per_isolation={"database": 1}), {"database": 1}, "schema", True),
        (placement.Candidate("a", tenants=0), {}, "schema", False),
    ],
)
def test_room_counts_the_total_and_the_mode(
    candidate: placement.Candidate, placed: dict[str, int], isolation: str, room: bool
) -> None:
    assert candidate.has_room(placed, isolation) is room


def test_only_a_server_without_any_limit_is_unlimited() -> None:
    assert placement.Candidate("a").unlimited
    assert placement.Candidate("a", per_isolation={"schema": None}).unlimited
    assert not placement.Candidate("a", per_isolation={"schema": 5}).unlimited
    assert not placement.Candidate("a", tenants=5).unlimited
