"""kopf's connection limit leaves room for every watch stream."""

from __future__ import annotations

import kopf

from tenantdb.controllers import apiserver, operator


def test_every_namespace_has_room_for_its_watches() -> None:
    assert apiserver.connection_limit([]) == apiserver.REQUESTS + apiserver.WATCHES
    three = apiserver.connection_limit(["a", "b", "c"])
    assert three == apiserver.REQUESTS + 3 * apiserver.WATCHES


def test_namespace_globs_are_not_capped() -> None:
    assert apiserver.connection_limit(["tenants-*"]) == 0
    assert apiserver.connection_limit(["a", "!b"]) == 0


def test_the_watch_allowance_covers_every_kind_with_handlers() -> None:
    # One watch stream per kind with handlers, plus kopf's own (peering, namespaces, CRDs).
    assert operator.HANDLER_MODULES
    registry = kopf.get_default_registry()
    kinds = {
        (handler.selector.group, handler.selector.any_name)
        for part in (registry._indexing, registry._watching, registry._changing, registry._spawning)
        for handler in part.get_all_handlers()
        if handler.selector is not None
    }
    assert len(kinds) + 3 <= apiserver.WATCHES
