"""What a custom resource is, beyond its spec and status models.

Each kind module (``tenants``, ``migrations``, ``backups``) declares one
``ResourceKind``; ``crds`` turns it into a CustomResourceDefinition.
"""

from dataclasses import dataclass, field

from pydantic import BaseModel


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry: what ``kubectl get`` shows."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class Validation:
    """One CEL rule (``x-kubernetes-validations``) checked by the API server."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ResourceKind:
    """A custom resource kind of the ``tenantdb.io`` group (namespaced unless said)."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: tuple[PrinterColumn, ...]
    description: str
    root_validations: tuple[Validation, ...] = ()
    spec_required: bool = True
    categories: tuple[str, ...] = field(default=("tenantdb",))
    cluster_scoped: bool = False

    @property
    def singular(self) -> str:
        """The lowercase singular name (``tenant``)."""
        return self.kind.lower()
