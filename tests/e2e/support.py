"""Small helpers the end-to-end suites share: manifests, connections, polling."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg


def tenant(name: str, **spec: object) -> str:
    lines = [f"  {key}: {value}" for key, value in spec.items()]
    return "\n".join(
        [
            "apiVersion: tenantdb.io/v1alpha1",
            "kind: Tenant",
            "metadata:",
            f"  name: {name}",
            "spec:",
            *lines,
        ]
    )


def connect(creds: dict[str, str]) -> psycopg.Connection:
    return psycopg.connect(creds["uri"], autocommit=True, connect_timeout=10)


def create_as_owner(admin: psycopg.Connection, status: dict[str, str], statement: str) -> None:
    """DDL the way migrations run it: as the tenant's owner role, in its schema."""
    with admin.transaction():
        admin.execute(f'SET LOCAL ROLE "{status["ownerRole"]}"')
        admin.execute(f'SET LOCAL search_path = "{status["schema"]}"')
        admin.execute(statement)


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.5)
