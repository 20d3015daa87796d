"""The API server's own count of the requests it served (``apiserver_request_total``).

What a client says it sent can miss retries, watches and other clients;
the API server counts every request it answered, by verb, resource and
subresource. Read through kubectl with the admin kubeconfig (``/metrics``
needs a user allowed to read it), so tests and benchmarks count from the
server itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from tenantdb.devenv import stack

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Request(NamedTuple):
    """One kind of request: ``PATCH tenants/status``."""

    verb: str
    resource: str
    subresource: str

    def __str__(self) -> str:
        where = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {where}"


def parse(text: str) -> Counter[Request]:
    """The request counts in a ``/metrics`` page, summed over codes and other labels."""
    counts: Counter[Request] = Counter()
    for line in text.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None:
            continue
        labels = dict(_LABEL.findall(sample["labels"]))
        key = Request(
            labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", "")
        )
        counts[key] += int(float(sample["value"]))
    return counts


def read(kubeconfig: Path) -> Counter[Request]:
    """The counts now."""
    return parse(stack.kubectl(kubeconfig, "get", "--raw", "/metrics"))


def since(before: Mapping[Request, int], after: Mapping[Request, int]) -> Counter[Request]:
    """The requests served between two reads (positive counts only)."""
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)})


def writes(
    counts: Mapping[Request, int], resources: frozenset[str] | None = None
) -> Counter[Request]:
    """The writes among ``counts``, of ``resources`` only if given."""
    return Counter(
        {
            k: v
            for k, v in counts.items()
            if k.verb in WRITE_VERBS and (resources is None or k.resource in resources)
        }
    )
