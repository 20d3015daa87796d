"""The Kubernetes label selector, as Migration.spec.tenantSelector uses it."""

from enum import StrEnum

from pydantic import Field

from tenantdb.api import base

LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


class SelectorOperator(StrEnum):
    """Operators of a label selector requirement."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class SelectorRequirement(base.ApiModel):
    """One ``matchExpressions`` entry."""

    key: str = Field(max_length=317, pattern=LABEL_KEY_PATTERN)
    """The label key the requirement applies to."""
    operator: SelectorOperator
    """How the key relates to the values."""
    values: list[str] = Field(default_factory=list, max_length=64)
    """Values for ``In`` and ``NotIn``; empty for ``Exists``/``DoesNotExist``."""


class LabelSelector(base.ApiModel):
    """Selects tenants by their labels (metav1.LabelSelector)."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    """Labels a tenant must carry, with these exact values."""
    match_expressions: list[SelectorRequirement] = Field(default_factory=list, max_length=32)
    """Further requirements, all of which must hold."""
