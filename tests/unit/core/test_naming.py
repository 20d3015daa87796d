"""Names derived for tenants are valid, bounded and never collide."""

import pytest

from tenantdb.core import errors, naming

UID_A = "4b0f7c9e-0000-4000-8000-000000000001"
UID_B = "4b0f7c9e-0000-4000-8000-000000000002"


def test_names_are_readable_prefix_plus_uid_hash() -> None:
    names = naming.tenant_names("acme-corp", UID_A)
    assert names.schema == f"t_acme_corp_{naming.uid_hash(UID_A)}"
    assert names.owner_role == f"{names.schema}_owner"
    assert names.login_role == names.schema


def test_same_name_in_two_namespaces_maps_to_different_objects() -> None:
    assert naming.tenant_names("acme", UID_A) != naming.tenant_names("acme", UID_B)


def test_longest_tenant_name_stays_within_63_bytes() -> None:
    names = naming.tenant_names("a" * 40, UID_A)
    assert max(len(n.encode()) for n in (names.schema, names.owner_role)) <= 63


def test_longest_tenant_name_with_two_uids_gives_distinct_bounded_identifiers() -> None:
    first = naming.tenant_names("a" * 40, UID_A)
    second = naming.tenant_names("a" * 40, UID_B)
    fields = ("schema", "owner_role", "login_role", "database")
    for field in fields:
        mine, theirs = getattr(first, field), getattr(second, field)
        assert mine != theirs, field
        assert len(mine.encode()) <= 63 and len(theirs.encode()) <= 63, field


def test_names_that_would_collide_after_truncation_stay_distinct() -> None:
    first = naming.tenant_names("a" * 39 + "b", UID_A)
    second = naming.tenant_names("a" * 39 + "c", UID_A)
    assert first.schema != second.schema


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Acme",
        "1acme",
        "acme-",
        "-acme",
        "ac_me",
        "a" * 41,
        "acme;drop",
        'ac"me',
        "ac$$me",
        "ácme",
    ],
)
def test_bad_tenant_names_are_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidName):
        naming.tenant_names(bad, UID_A)


@pytest.mark.parametrize(
    "bad", ["pg_catalog", "pg_anything", "public", "template1", "Upper", "x" * 64, "a-b", "1a", ""]
)
def test_identifier_refuses_reserved_and_malformed(bad: str) -> None:
    with pytest.raises(errors.InvalidName):
        naming.identifier(bad)


def test_identifier_counts_bytes_not_characters() -> None:
    assert naming.identifier("a" * 63) == "a" * 63
    with pytest.raises(errors.InvalidName):
        naming.identifier("a" * 64)
