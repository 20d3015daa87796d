"""The base model every spec and status derives from.

Python attributes are snake_case; the Kubernetes JSON is camelCase. Field
docstrings become the CRD's descriptions, so they are written for users.
"""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A camelCase Kubernetes object part that refuses unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )

    def to_api(self) -> dict[str, object]:
        """Serialise the way the API server stores it (camelCase, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
