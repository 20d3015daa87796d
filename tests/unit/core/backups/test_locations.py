"""Archive locations are built from validated parts and keys never escape a root."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tenantdb.core.backups import storage

STARTED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
UID = "4b0f7c9e-0000-4000-8000-000000000001"


def test_location_is_namespace_tenant_timestamp_uid() -> None:
    location = storage.archive_location("shop", "acme", STARTED, UID)
    assert location == f"shop/acme/20260304T050607Z-{UID}"
    assert location.startswith(storage.tenant_location("shop", "acme") + "/")
    assert storage.object_key(location, "data") == f"{location}/data"


def test_timestamp_is_utc_whatever_the_zone_given() -> None:
    local = STARTED.astimezone(timezone(timedelta(hours=-7)))
    assert storage.archive_location("shop", "acme", local, UID) == storage.archive_location(
        "shop", "acme", STARTED, UID
    )


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        storage.archive_location("shop", "acme", STARTED.replace(tzinfo=None), UID)


@pytest.mark.parametrize(
    ("namespace", "tenant", "uid"),
    [
        ("..", "acme", UID),
        ("shop", "../etc", UID),
        ("/abs", "acme", UID),
        ("shop", "a/b", UID),
        ("shop", "", UID),
        ("shop", "acme", "x/../../y"),
        ("shop", ".hidden", UID),
        ("shop", "acme\\x", UID),
    ],
)
def test_unsafe_parts_are_refused(namespace: str, tenant: str, uid: str) -> None:
    with pytest.raises(ValueError, match="archive location"):
        storage.archive_location(namespace, tenant, STARTED, uid)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a//b", "a/../b", "./a", "a/.", "a\\b", "a\0b"])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="relative object key"):
        storage.checked_key(key)
