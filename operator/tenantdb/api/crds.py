"""CustomResourceDefinitions generated from the pydantic models.

Pydantic emits JSON Schema; the API server wants a *structural* OpenAPI v3
schema: no ``$ref``, no ``anyOf`` with ``null``, no ``title``. This module
does that translation and nothing else, so ``crds/`` can be regenerated and
compared byte for byte (``make crds-check``).
"""

from typing import Any

import yaml
from pydantic import BaseModel

from tenantdb.api import GROUP, VERSION, backups, migrations, peering, resources, servers, tenants

KINDS: tuple[resources.ResourceKind, ...] = (
    tenants.TENANT,
    migrations.MIGRATION,
    backups.BACKUP,
    backups.BACKUP_SCHEDULE,
    servers.DATABASE_SERVER,
)

Schema = dict[str, Any]

_DROPPED_KEYS = frozenset({"title", "$defs"})


def structural_schema(model: type[BaseModel]) -> Schema:
    """The model's schema, inlined and simplified for the API server."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    simplified: Schema = _simplify(raw, raw.get("$defs", {}))
    return simplified


def _simplify(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_simplify(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _simplify(merged, defs)
    if "anyOf" in node:
        return _simplify(_without_null_branch(node), defs)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    out = {k: _simplify(v, defs) for k, v in node.items() if k not in _DROPPED_KEYS}
    if out.get("default") is None:
        out.pop("default", None)
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]  # not structural; pruning drops unknown fields
    if isinstance(out.get("description"), str):
        out["description"] = " ".join(out["description"].split()).replace("``", "`")
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    if "propertyNames" in out:
        _keys_as_cel(out, out.pop("propertyNames"))
    return out


def _keys_as_cel(node: Schema, names: Schema) -> None:
    """Map keys' bounds (``propertyNames``, not structural) as CEL rules on the map."""
    rules = node.setdefault("x-kubernetes-validations", [])
    if "minLength" in names:
        low = names["minLength"]
        rules.append(
            {"rule": f"self.all(k, size(k) >= {low})", "message": "keys must not be empty"}
        )
    if "maxLength" in names:
        high = names["maxLength"]
        message = f"keys must be at most {high} characters"
        rules.append({"rule": f"self.all(k, size(k) <= {high})", "message": message})
    unknown = set(names) - {"minLength", "maxLength", "type"}
    if unknown:
        raise ValueError(f"map key constraints without a CEL translation: {sorted(unknown)}")


def _without_null_branch(node: Schema) -> Schema:
    """``X | None`` becomes ``X``: optional fields are simply not required."""
    branches = [b for b in node["anyOf"] if b != {"type": "null"}]
    if len(branches) != 1:
        raise ValueError(f"unions are not structural: {node['anyOf']!r}")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**branches[0], **rest}


def _root_schema(kind: resources.ResourceKind) -> Schema:
    spec = structural_schema(kind.spec)
    status = structural_schema(kind.status)
    if not kind.spec_required:
        spec["default"] = {}
    root: Schema = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if kind.spec_required:
        root["required"] = ["spec"]
    if kind.root_validations:
        root["x-kubernetes-validations"] = [_validation(v) for v in kind.root_validations]
    return root


def _validation(validation: resources.Validation) -> Schema:
    out: Schema = {"rule": validation.rule, "message": validation.message}
    if validation.field_path:
        out["fieldPath"] = validation.field_path
    if validation.reason:
        out["reason"] = validation.reason
    return out


def _printer_column(column: resources.PrinterColumn) -> Schema:
    out: Schema = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
    if column.priority:
        out["priority"] = column.priority
    if column.description:
        out["description"] = column.description
    return out


def definition(kind: resources.ResourceKind) -> Schema:
    """The CustomResourceDefinition of one kind, as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Cluster" if kind.cluster_scoped else "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [_printer_column(c) for c in kind.printer_columns],
                    "schema": {"openAPIV3Schema": _root_schema(kind)},
                }
            ],
        },
    }


HEADER = "# Generated by `tenantdb crds` from tenantdb.api; do not edit.\n"


def render(kind: resources.ResourceKind) -> str:
    """The CRD as the YAML committed under ``crds/``."""
    return HEADER + yaml.safe_dump(definition(kind), sort_keys=False, width=100)


def files() -> dict[str, str]:
    """Every file of ``crds/`` by name: tenantdb's kinds and kopf's peering kinds."""
    rendered = {file_name(kind): render(kind) for kind in KINDS}
    for kind in peering.SCOPES:
        document = yaml.safe_dump(peering.definition(kind), sort_keys=False, width=100)
        rendered[peering.file_name(kind)] = HEADER + document
    return rendered


def file_name(kind: resources.ResourceKind) -> str:
    """The file under ``crds/`` holding the kind's CRD."""
    return f"{GROUP}_{kind.plural}.yaml"
