"""kopf's bookkeeping on our objects, kept small whatever the spec.

kopf keeps the last handled state of an object (its "diff base") and each
handler's progress in annotations. The API server caps all annotations of
an object at 256 KiB together, so a copy of a large spec, or of the user's
own annotations, would make every later patch fail: no status written, no
finalizer released, a namespace that never finishes deleting. Here the
diff base keeps small values as they are and replaces large ones by their
sha256 (a change still shows as a change), and progress messages are cut
short. Must not touch: what the handlers write into status.

For the kinds in ``STATUS_KINDS`` both live in ``status.operator`` instead
(``api.tenants.Bookkeeping``): the status patch a handler writes anyway then
carries them, where annotations cost a metadata patch of their own on every
reconcile. Objects reconciled before keep their annotations until the next
write, which moves them over (read from either, written to status only).
"""

import hashlib
import json
from typing import Any, cast

import kopf

from tenantdb.api import tenants

VALUE_LIMIT = 512
"""Bytes of JSON above which a value of the diff base is kept as its digest."""
TOTAL_LIMIT = 8192
"""Bytes of JSON above which whole sections are kept as their digests."""
MESSAGE_LIMIT = 1024
"""Characters of a handler's error message kept in its progress record."""
STATUS_KINDS = frozenset({tenants.TENANT.kind})
"""Kinds whose kopf bookkeeping lives in ``status.operator``."""
BOOKKEEPING = "operator"
DIFF_BASE = "lastHandledConfiguration"
PROGRESS = "progress"
TOUCH = "touch"
REQUEUE = "requeue"


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


def in_status(body: Any) -> bool:
    """Whether this object's bookkeeping lives in ``status.operator``."""
    return body.get("kind") in STATUS_KINDS


def _stored(body: Any) -> dict[str, Any]:
    return dict((body.get("status") or {}).get(BOOKKEEPING) or {})


def _pending(patch: kopf.Patch) -> dict[str, Any]:
    return dict(patch.status.get(BOOKKEEPING) or {})


def _put(patch: kopf.Patch, key: str, value: Any) -> None:
    patch.status[BOOKKEEPING] = {**_pending(patch), key: value}


def _drop_empty(patch: kopf.Patch) -> None:
    """No empty ``status.operator`` nor ``status`` left behind: each would cost a write."""
    pending = _pending(patch)
    if PROGRESS in pending and not pending[PROGRESS]:
        del pending[PROGRESS]
    if pending:
        patch.status[BOOKKEEPING] = pending
    elif BOOKKEEPING in patch.status:
        del patch.status[BOOKKEEPING]
    if "status" in patch and not patch["status"]:
        del patch["status"]


class CompactDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """The diff base as one value of at most about ``TOTAL_LIMIT`` bytes.

    kopf compares what ``build`` returns for the object now with what it
    stored, both compacted, so a change of a large value is still a change.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = dict(super().build(body=body, extra_fields=extra_fields))
        wake = _stored(body).get(REQUEUE) if in_status(body) else None
        if wake:
            essence[REQUEUE] = wake  # a change here is a change: see controllers/requeue.py
        return cast(kopf.BodyEssence, compact(essence))

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        encoded = _stored(body).get(DIFF_BASE) if in_status(body) else None
        if encoded:
            return cast(kopf.BodyEssence, json.loads(encoded))
        return super().fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if not in_status(body):
            super().store(body=body, patch=patch, essence=essence)
            return
        _put(patch, DIFF_BASE, json.dumps(essence, separators=(",", ":")))
        annotations = body.metadata.annotations
        for legacy in self.make_keys(self.key, body=body):
            if legacy in annotations:
                patch.metadata.annotations[legacy] = None


class BoundedProgressStorage(kopf.AnnotationsProgressStorage):
    """Handler progress with error messages cut to ``MESSAGE_LIMIT``: in annotations, or
    for ``STATUS_KINDS`` as JSON records in ``status.operator.progress``."""

    def fetch(self, *, key: Any, body: kopf.Body) -> kopf.ProgressRecord | None:
        encoded = (_stored(body).get(PROGRESS) or {}).get(key) if in_status(body) else None
        if encoded:
            return cast(kopf.ProgressRecord, json.loads(encoded))
        return super().fetch(key=key, body=body)

    def store(
        self, *, key: Any, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch
    ) -> None:
        message = record.get("message")
        if message and len(message) > MESSAGE_LIMIT:
            record = cast(
                kopf.ProgressRecord, {**record, "message": message[: MESSAGE_LIMIT - 3] + "..."}
            )
        if not in_status(body):
            super().store(key=key, record=record, body=body, patch=patch)
            return
        kept = {k: v for k, v in record.items() if v is not None}
        progress = dict(_pending(patch).get(PROGRESS) or {})
        progress[key] = json.dumps(kept, separators=(",", ":"))
        _put(patch, PROGRESS, progress)
        super().purge(key=key, body=body, patch=patch)  # a legacy annotation, if any

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        super().purge(key=key, body=body, patch=patch)
        if not in_status(body):
            return
        progress = dict(_pending(patch).get(PROGRESS) or {})
        if key in (_stored(body).get(PROGRESS) or {}):
            progress[key] = None
        else:
            progress.pop(key, None)
        _put(patch, PROGRESS, progress)
        _drop_empty(patch)

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        if not in_status(body):
            super().touch(body=body, patch=patch, value=value)
        elif _stored(body).get(TOUCH) != value:
            _put(patch, TOUCH, value)
