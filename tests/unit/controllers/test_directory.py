"""The directory of servers: which server answers, and what a missing one means (pure)."""

from collections.abc import Callable
from typing import Any, cast

import pytest

from tenantdb.api import selectors
from tenantdb.api import servers as api
from tenantdb.controllers import directory
from tenantdb.core import commands


class Closed:
    """Stands in for a ``commands.Server``: the directory only keeps and closes it."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def server() -> commands.Server:
    return cast(commands.Server, Closed())


def member(name: str, **changes: Any) -> directory.Member:
    return directory.Member(name, server(), {"host": f"{name}.example"}, **changes)


def test_a_server_not_tried_yet_is_connecting_only_just_after_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = directory.Directory(server(), {"host": "own"})
    declared = {"east", "west"}
    assert servers.member(None).name == api.DEFAULT
    with pytest.raises(directory.ServerConnecting):
        servers.member("east", declared)
    unknown = refusal(lambda: servers.member("nowhere", declared))
    assert "not connected" in str(unknown)
    servers.tried("east")  # reached and refused, say
    refusal(lambda: servers.member("east", declared))
    monkeypatch.setattr(directory, "STARTING", 0.0)
    refusal(lambda: servers.member("west", declared))


def refusal(call: Callable[[], object]) -> directory.ServerUnavailable:
    """The ``ServerUnavailable`` that is not ``ServerConnecting`` the call raises."""
    with pytest.raises(directory.ServerUnavailable) as raised:
        call()
    assert not isinstance(raised.value, directory.ServerConnecting)
    return raised.value


def test_candidates_are_the_schedulable_matching_servers_never_the_default() -> None:
    servers = directory.Directory(server(), {"host": "own"})
    servers.join(member("east", labels={"zone": "a"}))
    servers.join(member("west", labels={"zone": "a"}, unschedulable=True))
    servers.join(member("north", labels={"zone": "b"}))
    chosen = servers.candidates(selectors.LabelSelector(match_labels={"zone": "a"}))
    assert [c.name for c in chosen] == ["east"]
    assert [c.name for c in servers.candidates(selectors.LabelSelector())] == ["east", "north"]


def test_a_replaced_or_removed_server_has_its_connections_closed() -> None:
    servers = directory.Directory(server(), {"host": "own"})
    first = member("east")
    servers.join(first)
    servers.join(member("east"))
    assert cast(Closed, first.server).closed
    second = servers.member("east")
    servers.leave("east")
    assert cast(Closed, second.server).closed
    servers.leave(api.DEFAULT)  # never the operator's own
    assert servers.member(None).name == api.DEFAULT
