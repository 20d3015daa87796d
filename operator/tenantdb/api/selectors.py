"""The Kubernetes label selector, as Migration.spec.tenantSelector uses it."""

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from tenantdb.api import base

LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317)]
"""A label key (an optional DNS prefix of 253, ``/``, a name of 63)."""
LabelValue = Annotated[str, StringConstraints(max_length=63)]
"""A label value, at most 63 characters as Kubernetes allows."""


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
    values: list[LabelValue] = Field(default_factory=list, max_length=64)
    """Values for ``In`` and ``NotIn``; empty for ``Exists``/``DoesNotExist``."""


class LabelSelector(base.ApiModel):
    """Selects tenants by their labels (metav1.LabelSelector)."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)
    """Labels a tenant must carry, with these exact values."""
    match_expressions: list[SelectorRequirement] = Field(default_factory=list, max_length=32)
    """Further requirements, all of which must hold."""
