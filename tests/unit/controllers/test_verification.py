"""Which tenants one tick of the verification loop checks."""

from tenantdb.controllers import verification
from tenantdb.controllers.verification import Target


def targets(count: int, phase: str = "Ready") -> list[Target]:
    return [Target(f"u{i}", f"t{i}", "ns", phase, None, None) for i in range(count)]


def test_never_verified_first_then_the_longest_ago() -> None:
    tenants = targets(3)
    last = {"u0": 50.0, "u1": 10.0}
    chosen = verification.due(tenants, last, now=400.0, interval=300.0, tick=300.0)
    assert [t.uid for t in chosen] == ["u2", "u1", "u0"]


def test_recently_verified_and_unprovisioned_tenants_wait() -> None:
    tenants = [*targets(2), Target("u9", "t9", "ns", "Failed", None, None)]
    chosen = verification.due(tenants, {"u0": 350.0}, now=400.0, interval=300.0, tick=10.0)
    assert [t.uid for t in chosen] == ["u1"]


def test_one_interval_of_work_is_spread_over_its_ticks() -> None:
    tenants = targets(10_000)
    chosen = verification.due(tenants, {}, now=0.0, interval=300.0, tick=10.0)
    assert len(chosen) == 334  # 10,000 tenants in 30 ticks, not all on the first


def test_an_interval_shorter_than_a_tick_checks_everyone_due() -> None:
    chosen = verification.due(targets(5), {}, now=0.0, interval=5.0, tick=10.0)
    assert len(chosen) == 5


def test_the_cache_keeps_what_the_loop_needs() -> None:
    status = {
        "phase": "Ready",
        "version": 3,
        "conditions": [
            {"type": "Ready", "status": "True", "message": "tenant is provisioned"},
            {"type": "IsolationVerified", "status": "True", "message": "isolation verified"},
        ],
    }
    body = {"metadata": {"uid": "u", "name": "t", "namespace": "ns"}, "status": status}
    assert verification.target(body) == (
        "",
        Target("u", "t", "ns", "Ready", 3, ("True", "isolation verified")),
    )
