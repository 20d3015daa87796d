"""Chart fixtures: the real Helm binary, built once by hack/helm.sh."""

from __future__ import annotations

import pytest

from tests.chart import helm as helm_


@pytest.fixture(scope="session")
def helm() -> helm_.Helm:
    return helm_.Helm(helm_.find_binary())
