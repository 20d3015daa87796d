"""kube.py's one failure type: an unreachable API server is a retryable ``ApiError``."""

from __future__ import annotations

import pytest
import urllib3

from tenantdb.controllers import kube


def test_an_unreachable_api_server_is_a_retryable_api_error() -> None:
    refused = urllib3.exceptions.MaxRetryError(None, "/apis", reason="connection refused")  # type: ignore[arg-type]

    @kube._reachable
    def call() -> None:
        raise refused

    with pytest.raises(kube.ApiError) as caught:
        call()
    assert caught.value.status == 503
    assert "connection refused" in str(caught.value.reason)
    assert kube.is_conflict_or_unavailable(caught.value)
    assert caught.value.__cause__ is refused


def test_what_the_api_server_answered_is_left_as_it_was() -> None:
    @kube._reachable
    def call() -> None:
        raise kube.ApiError(status=404, reason="Not Found")

    with pytest.raises(kube.ApiError) as caught:
        call()
    assert caught.value.status == 404
    assert not kube.is_conflict_or_unavailable(caught.value)
