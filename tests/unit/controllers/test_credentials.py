"""Where a Tenant's password is decided: its Secret, read or created (no API server)."""

from typing import Any

import pytest

from tenantdb.controllers import credentials, kube

OWNER = {"uid": "uid-1", "kind": "Tenant", "name": "acme"}


class FakeSecrets:
    """The Secret calls ``StoredPassword`` makes, against one dict, recorded in order."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.secret = existing
        self.calls: list[str] = []

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("GET")
        return self.secret

    def create_secret_once(self, namespace: str, body: dict[str, Any]) -> str | None:
        self.calls.append("POST")
        if self.secret is not None:
            return None
        self.secret = {
            "metadata": {"resourceVersion": "1", "ownerReferences": [OWNER]},
            "data": body["stringData"],
        }
        return "1"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> FakeSecrets:
    fake = FakeSecrets()
    monkeypatch.setattr(kube, "read_secret", fake.read_secret)
    monkeypatch.setattr(kube, "create_secret_once", fake.create_secret_once)
    return fake


def stored(fresh: bool) -> credentials.StoredPassword:
    return credentials.StoredPassword("ns", "acme", OWNER, fresh=fresh)


def test_a_fresh_tenant_creates_its_secret_without_reading_first(secrets: FakeSecrets) -> None:
    source = stored(fresh=True)
    password = source()
    assert secrets.calls == ["POST"]
    assert source.written and source.data["password"] == password


def test_a_fresh_tenant_whose_secret_exists_keeps_its_password(secrets: FakeSecrets) -> None:
    stored(fresh=False)()
    kept = secrets.secret
    assert kept is not None
    secrets.calls.clear()
    source = stored(fresh=True)
    assert source() == kept["data"]["password"]
    assert secrets.calls == ["POST", "GET"]
    assert not source.written


def test_a_secret_of_someone_else_is_refused_fresh_or_not(secrets: FakeSecrets) -> None:
    secrets.secret = {"metadata": {"resourceVersion": "9", "ownerReferences": []}, "data": {}}
    for fresh in (True, False):
        with pytest.raises(credentials.SecretConflict):
            stored(fresh)()
