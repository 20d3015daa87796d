"""The committed CRDs are exactly what the models produce, and are structural."""

import json
from pathlib import Path

import pytest

from tenantdb.api import crds, resources

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_models(kind: resources.ResourceKind) -> None:
    assert (CRD_DIR / crds.file_name(kind)).read_text() == crds.render(kind)


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: resources.ResourceKind) -> None:
    text = json.dumps(crds.definition(kind))
    for forbidden in (
        '"$ref"',
        '"anyOf"',
        '"title"',
        '"type": "null"',
        '"additionalProperties": false',
    ):
        assert forbidden not in text


@pytest.mark.parametrize("kind", crds.KINDS, ids=lambda k: k.kind)
def test_every_crd_has_status_columns_and_category(kind: resources.ResourceKind) -> None:
    version = crds.definition(kind)["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert "Phase" in names and "Age" in names
    assert crds.definition(kind)["spec"]["names"]["categories"] == ["tenantdb"]


def test_every_spec_field_is_documented() -> None:
    def walk(node: dict[str, object], path: str) -> list[str]:
        missing = []
        for name, child in (node.get("properties") or {}).items():  # type: ignore[attr-defined]
            if "description" not in child:
                missing.append(f"{path}.{name}")
            missing += walk(child, f"{path}.{name}")
        return missing

    for kind in crds.KINDS:
        assert walk(crds.structural_schema(kind.spec), kind.kind) == []


def test_isolation_and_version_are_immutable() -> None:
    tenant = crds.structural_schema(crds.KINDS[0].spec)["properties"]["isolation"]
    migration = crds.structural_schema(crds.KINDS[1].spec)["properties"]["version"]
    for field in (tenant, migration):
        assert {"rule": "self == oldSelf"}.items() <= field["x-kubernetes-validations"][0].items()


def test_committed_reference_matches_models() -> None:
    from tenantdb.api import reference  # noqa: PLC0415

    committed = (CRD_DIR.parent / "docs" / "crd-reference.md").read_text()
    assert committed == reference.render()
