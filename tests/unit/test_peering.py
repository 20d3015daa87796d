"""Peering settings: the priority each replica runs with, and what kopf is told."""

from __future__ import annotations

from typing import Any

import pytest

from tenantdb import cli, settings
from tenantdb.controllers import operator


def test_priority_is_derived_from_the_pod_uid_and_differs_per_pod() -> None:
    uids = [f"5f0c7e1a-0000-4000-8000-{index:012d}" for index in range(1000)]
    priorities = {settings.PeeringSettings.from_environment({"POD_UID": u}).priority for u in uids}
    assert len(priorities) == len(uids)
    assert all(1 <= p <= settings.PRIORITY_RANGE for p in priorities)
    again = settings.PeeringSettings.from_environment({"POD_UID": uids[0]})
    assert again.priority == settings.derived_priority(uids[0])


def test_explicit_priority_and_defaults() -> None:
    chosen = settings.PeeringSettings.from_environment(
        {"TENANTDB_PRIORITY": "7", "TENANTDB_PEERING": "ha", "TENANTDB_PEERING_LIFETIME": "30"}
    )
    assert (chosen.name, chosen.priority, chosen.lifetime) == ("ha", 7, 30)
    unset = settings.PeeringSettings.from_environment({})
    assert unset.name is None and unset.lifetime == 15
    with pytest.raises(ValueError, match="at least 5"):
        settings.PeeringSettings.from_environment({"TENANTDB_PEERING_LIFETIME": "1"})


def test_run_flags_reach_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(operator.kopf, "run", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(operator.kopf, "configure", lambda **kwargs: None)
    monkeypatch.setenv("POD_UID", "uid-1")
    assert cli.main(["run", "--peering", "ha", "--priority", "42"]) == 0
    assert (seen["standalone"], seen["peering_name"], seen["priority"]) == (False, "ha", 42)
    assert seen["settings"].peering.lifetime == 15
    monkeypatch.delenv("TENANTDB_PEERING", raising=False)
    assert cli.main(["run"]) == 0
    assert seen["standalone"] is True and seen["peering_name"] is None
    assert seen["priority"] == settings.derived_priority("uid-1")
