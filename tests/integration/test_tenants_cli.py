"""`tenantdb tenants list` reads the registry the operator writes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands
from tenantdb.settings import DEFAULT_PLANS

pytestmark = pytest.mark.postgres


def test_lists_live_suspended_and_retained_tenants(server: commands.Server) -> None:
    namespace = f"cli-{uuid.uuid4().hex[:6]}"

    def provision(name: str, mode: Isolation, **extra: object) -> str:
        uid = str(uuid.uuid4())
        request = commands.TenantRequest(
            uid=uid,
            name=name,
            namespace=namespace,
            isolation=mode,
            plan="free",
            limits=DEFAULT_PLANS["free"],
            **extra,  # type: ignore[arg-type]
        )
        commands.provision(server, request, "pw", True)
        return uid

    provision("active-one", Isolation.SCHEMA, domain=f"{namespace}.example.com")
    provision("sleeping", Isolation.SHARED, suspended=True)
    gone = provision("kept", Isolation.DATABASE)
    commands.deprovision(server, gone, "kept", drop=False)

    result = subprocess.run(
        [sys.executable, "-m", "tenantdb", "tenants", "list", "--namespace", namespace],
        env={**os.environ, "DATABASE_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "ISOLATION",
        "PLAN",
        "STATE",
        "DATABASE",
        "SCHEMA",
        "ROLE",
        "DOMAIN",
    ]
    by_name = {line.split()[1]: line.split() for line in lines[1:]}
    assert by_name["active-one"][2:5] == ["schema", "free", "active"]
    assert by_name["active-one"][-1] == f"{namespace}.example.com"
    assert by_name["sleeping"][2:5] == ["shared", "free", "suspended"]
    assert by_name["kept"][2:5] == ["database", "free", "retained"]
    assert server.url.split("@")[0] not in result.stdout + result.stderr  # no credentials printed
