"""Conditions follow the Kubernetes conventions."""

from tenantdb.api import conditions

READY = conditions.ConditionType.READY


def test_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.set_condition([], READY, "False", "Provisioning", "", 1, timestamp="t1")
    same = conditions.set_condition(first, READY, "False", "DatabaseError", "x", 2, timestamp="t2")
    flipped = conditions.set_condition(same, READY, "True", "Provisioned", "", 2, timestamp="t3")
    assert first[0].last_transition_time == "t1"
    assert same[0].last_transition_time == "t1"
    assert same[0].reason == "DatabaseError"
    assert same[0].observed_generation == 2
    assert flipped[0].last_transition_time == "t3"


def test_ready_comes_first_and_other_types_are_kept() -> None:
    seeded = conditions.set_condition([], conditions.ConditionType.SEEDED, "True", "Seeded", "", 1)
    both = conditions.set_condition(seeded, READY, "True", "Provisioned", "", 1)
    assert [c.type for c in both] == ["Ready", "Seeded"]
    assert conditions.is_true(both, READY)


def test_condition_serialises_in_camel_case() -> None:
    (ready,) = conditions.set_condition([], READY, "True", "Provisioned", "ok", 3, timestamp="t")
    assert ready.to_api() == {
        "type": "Ready",
        "status": "True",
        "reason": "Provisioned",
        "message": "ok",
        "lastTransitionTime": "t",
        "observedGeneration": 3,
    }
