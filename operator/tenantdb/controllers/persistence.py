"""kopf's bookkeeping on our objects, kept small whatever the spec.

kopf keeps the last handled state of an object (its "diff base") and each
handler's progress in annotations. The API server caps all annotations of
an object at 256 KiB together, so a copy of a large spec, or of the user's
own annotations, would make every later patch fail: no status written, no
finalizer released, a namespace that never finishes deleting. Here the
diff base keeps small values as they are and replaces large ones by their
sha256 (a change still shows as a change), and progress messages are cut
short. Must not touch: what the handlers write into status.
"""

import hashlib
import json
from typing import Any, cast

import kopf

VALUE_LIMIT = 512
"""Bytes of JSON above which a value of the diff base is kept as its digest."""
TOTAL_LIMIT = 8192
"""Bytes of JSON above which whole sections are kept as their digests."""
MESSAGE_LIMIT = 1024
"""Characters of a handler's error message kept in its progress annotation."""


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True))


def digest(value: Any) -> str:
    """A stand-in for a large value: equal for equal values, different otherwise."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def compact(essence: dict[str, Any]) -> dict[str, Any]:
    """The essence with every large value, then if need be every section, as a digest."""
    out = json.loads(json.dumps(essence))
    sections = [out.get("spec"), (out.get("metadata") or {}).get("annotations")]
    for section in sections:
        if isinstance(section, dict):
            for key, value in section.items():
                if _size(value) > VALUE_LIMIT:
                    section[key] = digest(value)
    if _size(out) > TOTAL_LIMIT and "annotations" in (out.get("metadata") or {}):
        out["metadata"]["annotations"] = {"digest": digest(out["metadata"]["annotations"])}
    if _size(out) > TOTAL_LIMIT and "spec" in out:
        out["spec"] = {"digest": digest(out["spec"])}
    return cast(dict[str, Any], out)


class CompactDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The diff base in one annotation of at most about ``TOTAL_LIMIT`` bytes.

    kopf compares what ``build`` returns for the object now with what it
    stored, both compacted, so a change of a large value is still a change.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, compact(dict(essence)))


class BoundedProgressStorage(kopf.AnnotationsProgressStorage):
    """Handler progress in annotations, with error messages cut to ``MESSAGE_LIMIT``."""

    def store(
        self, *, key: Any, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch
    ) -> None:
        message = record.get("message")
        if message and len(message) > MESSAGE_LIMIT:
            record = cast(
                kopf.ProgressRecord, {**record, "message": message[: MESSAGE_LIMIT - 3] + "..."}
            )
        super().store(key=key, record=record, body=body, patch=patch)
