"""The in-memory records of other objects: watch events and the seeding list together."""

import json
from collections.abc import Mapping
from typing import Any

from tenantdb.controllers import caches


def _body(uid: str, namespace: str = "ns", phase: str = "Ready") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "namespace": namespace}, "status": {"phase": phase}}


def _phase(body: Mapping[str, Any]) -> tuple[str, str]:
    return str(body["metadata"]["namespace"]), str(body["status"]["phase"])


def test_records_are_grouped_by_key_and_deleted_ones_forgotten() -> None:
    cache = caches.Cache("widgets", _phase)
    cache.observe("ADDED", _body("a"))
    cache.observe("ADDED", _body("b", namespace="other", phase="Pending"))
    cache.observe("MODIFIED", _body("a", phase="Failed"))
    assert cache.get("ns") == ["Failed"] and cache.get("other") == ["Pending"]
    cache.observe("DELETED", _body("a", phase="Failed"))
    assert cache.get("ns") == []


def test_a_seed_replaces_what_it_lists_but_not_what_events_changed_meanwhile() -> None:
    cache = caches.Cache("widgets", _phase)
    cache.observe("ADDED", _body("vanished"))
    cache.begin_seed()
    cache.observe("MODIFIED", _body("newer", phase="Failed"))  # after the list was read
    cache.observe("DELETED", _body("deleted"))
    cache.seed([_body("newer", phase="Ready"), _body("deleted"), _body("listed")])
    assert sorted(cache.get("ns")) == ["Failed", "Ready"]  # newer's event, listed's list
    cache.observe("MODIFIED", _body("listed", phase="Pending"))
    assert sorted(cache.get("ns")) == ["Failed", "Pending"]


def test_a_projection_may_keep_no_record() -> None:
    cache = caches.Cache("widgets", lambda body: None)
    cache.observe("ADDED", _body("a"))
    cache.seed([_body("b")])
    assert cache.get("ns") == []


def test_the_tenant_records_of_every_cache_share_one_copy_of_each_string() -> None:
    from tenantdb.controllers import migrations, verification  # noqa: PLC0415

    def decoded() -> dict[str, Any]:  # each watch event is decoded afresh
        return json.loads(
            '{"metadata": {"uid": "u-1", "name": "acme", "namespace": "shop",'
            ' "labels": {"tier": "gold"}}, "status": {"phase": "Ready", "server": "eu"}}'
        )

    _, target = verification.target(decoded())
    namespace, ref = migrations.TENANTS._project(decoded())
    assert target.uid is ref.uid and target.name is ref.name and target.phase is ref.phase
    assert namespace is target.namespace
    _, again = verification.target(decoded())
    assert again.server is target.server and again.namespace is target.namespace
